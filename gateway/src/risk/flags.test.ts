/**
 * Risk flags against a real PostgreSQL: one open flag per kind and subject, repeats update it (also when two
 * gateways raise at once), a decided flag lets the next raise open a new one, and bad input is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb, type Db } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { DUPLICATE_EVIDENCE_ADDRESSES_MAX, DUPLICATE_EVIDENCE_SESSIONS_MAX, raiseDuplicateIdentity, type DuplicateEvidence } from "./duplicate_identity.ts";
import { raiseRiskFlag, RISK_EVIDENCE_BYTES_MAX } from "./flags.ts";

let database: TestDatabase;
let other: Db;
beforeAll(async () => {
  database = await createTestDatabase();
  other = createDb(database.url, { poolConnectionsMax: 4 }); // a second gateway's client
}, 60_000);
afterAll(async () => {
  await other?.$disconnect();
  await database?.drop();
});

describe("raiseRiskFlag", () => {
  it("opens one flag and updates it on every repeat, keeping the highest severity", async () => {
    const first = await raiseRiskFlag(database.db, { kind: "shared_egress_ip", subject: "user:usr_a", severity: 1, evidence: { ip: "203.0.113.1" } });
    expect(first).toMatchObject({ raisedCount: 1, created: true });
    const again = await raiseRiskFlag(database.db, { kind: "shared_egress_ip", subject: "user:usr_a", severity: 3, evidence: { ip: "203.0.113.2" } });
    expect(again).toEqual({ id: first.id, raisedCount: 2, created: false });
    await raiseRiskFlag(database.db, { kind: "shared_egress_ip", subject: "user:usr_a", severity: 2, evidence: { ip: "203.0.113.3" } });
    const rows = await database.db.riskFlag.findMany({ where: { kind: "shared_egress_ip", subject: "user:usr_a" } });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: "open", raisedCount: 3, severity: 3, evidence: { ip: "203.0.113.3" } });
    expect(rows[0]!.lastRaisedAt.getTime()).toBeGreaterThan(rows[0]!.createdAt.getTime());
    // Another kind on the same subject is another flag.
    expect((await raiseRiskFlag(database.db, { kind: "self_dealing", subject: "user:usr_a", severity: 2, evidence: {} })).created).toBe(true);
  });

  it("keeps one open flag when two gateways raise it at the same moment, and counts every raise", async () => {
    const raise = (db: Db, i: number) =>
      raiseDuplicateIdentity(db, {
        agentId: "agt_race",
        live: { sessionId: "ses_live", gatewayId: "gw_1", address: "198.51.100.1" },
        refused: { sessionId: `ses_${i}`, gatewayId: "gw_2", address: `198.51.100.${10 + (i % 4)}`, at: new Date() },
      });
    await Promise.all(Array.from({ length: 12 }, (_, i) => raise(i % 2 ? database.db : other, i)));
    const rows = await database.db.riskFlag.findMany({ where: { subject: "agent:agt_race" } });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.raisedCount).toBe(12);
    const e = rows[0]!.evidence as DuplicateEvidence;
    // Every refusal's session is in the evidence, up to its bound, none twice: no raise lost its merge.
    expect(e.refusedSessions).toHaveLength(DUPLICATE_EVIDENCE_SESSIONS_MAX);
    expect(new Set(e.refusedSessions).size).toBe(DUPLICATE_EVIDENCE_SESSIONS_MAX);
    expect(e.addresses.sort()).toEqual(["198.51.100.1", "198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.13"]);
    expect(e.live).toEqual({ sessionId: "ses_live", gatewayId: "gw_1", address: "198.51.100.1" });
  });

  it("bounds the addresses a duplicate flag keeps", async () => {
    for (let i = 0; i < DUPLICATE_EVIDENCE_ADDRESSES_MAX + 5; i++) {
      await raiseDuplicateIdentity(database.db, {
        agentId: "agt_many",
        live: { sessionId: "ses_l", gatewayId: "gw_1", address: "192.0.2.1" },
        refused: { sessionId: `ses_${i}`, gatewayId: "gw_1", address: `192.0.2.${100 + i}`, at: new Date() },
      });
    }
    const flag = await database.db.riskFlag.findFirstOrThrow({ where: { subject: "agent:agt_many" } });
    expect((flag.evidence as DuplicateEvidence).addresses).toHaveLength(DUPLICATE_EVIDENCE_ADDRESSES_MAX);
    expect((flag.evidence as DuplicateEvidence).lastRefused.address).toBe(`192.0.2.${100 + DUPLICATE_EVIDENCE_ADDRESSES_MAX + 4}`);
  });

  it("opens a new flag once the open one is decided, and a decided flag cannot keep the open key", async () => {
    const first = await raiseRiskFlag(database.db, { kind: "ledger_mismatch", subject: "agent:agt_d", severity: 2, evidence: { n: 1 } });
    await database.db.riskFlag.update({ where: { id: first.id }, data: { status: "dismissed", openKey: null } });
    const second = await raiseRiskFlag(database.db, { kind: "ledger_mismatch", subject: "agent:agt_d", severity: 2, evidence: { n: 2 } });
    expect(second.created).toBe(true);
    expect(second.id).not.toBe(first.id);
    await expect(database.db.riskFlag.update({ where: { id: second.id }, data: { status: "approved" } })).rejects.toThrow(/risk_flags_open_key_only_open/);
  });

  it("runs inside the caller's transaction, which can roll it back", async () => {
    await expect(
      database.db.$transaction(async (tx) => {
        await raiseRiskFlag(tx, { kind: "rolled_back", subject: "key:key_x", severity: 1, evidence: {} });
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    expect(await database.db.riskFlag.count({ where: { kind: "rolled_back" } })).toBe(0);
  });

  it("refuses a malformed kind or subject and oversized evidence", async () => {
    await expect(raiseRiskFlag(database.db, { kind: "Bad Kind", subject: "user:usr_a", severity: 1, evidence: {} })).rejects.toThrow(/not snake_case/);
    await expect(raiseRiskFlag(database.db, { kind: "ok_kind", subject: "wallet:x" as "user:x", severity: 1, evidence: {} })).rejects.toThrow(/subject/);
    await expect(
      raiseRiskFlag(database.db, { kind: "ok_kind", subject: "user:usr_a", severity: 1, evidence: { blob: "x".repeat(RISK_EVIDENCE_BYTES_MAX) } }),
    ).rejects.toThrow(/larger than/);
    expect(await database.db.riskFlag.count({ where: { kind: "ok_kind" } })).toBe(0);
  });
});
