/**
 * Egress probes against a real PostgreSQL, for the answers a stock agent never gives (e2e/stack/egress.test.ts
 * runs the stock agent): a report that is not what the echo saw, an answer to a probe whose echo never came, a
 * failed echo, an echo for an unknown, answered or expired nonce, a probe answered twice or by another agent, and
 * IPv4-mapped addresses comparing equal to plain ones.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { createLogger } from "../log.ts";
import { linksOf, viaPrisma } from "./account_links.ts";
import {
  EGRESS_ECHO_WINDOW_MS,
  EGRESS_MISMATCH,
  EGRESS_PROBE_RETENTION_MS,
  EGRESS_SHARE_WINDOW_MS,
  EgressProbes,
  plainAddress,
  SHARED_EGRESS,
  type EgressMismatchEvidence,
} from "./egress.ts";

let database: TestDatabase;
let probes: EgressProbes;
beforeAll(async () => {
  database = await createTestDatabase();
  probes = new EgressProbes({ db: database.db, log: createLogger({}, "error"), ownersPerAddressMax: 2 });
}, 60_000);
afterAll(async () => {
  await database?.drop();
});

const flagOf = async (kind: string, subject: string) => database.db.riskFlag.findFirst({ where: { kind, subject, status: "open" } });
const start = (agentId: string, ownerId = `usr_${agentId}`, tunnelAddress = "::ffff:198.51.100.7") =>
  probes.start({ agentId, ownerId, sessionId: `ses_${agentId}`, tunnelAddress });

describe("egress probes", () => {
  it("compares IPv4-mapped and plain addresses as one, and raises nothing when all three agree", async () => {
    expect(plainAddress("::ffff:198.51.100.7")).toBe("198.51.100.7");
    expect(plainAddress("2001:db8::1")).toBe("2001:db8::1");
    const nonce = await start("agt_same");
    expect(await probes.echo(nonce, "198.51.100.7")).toBe(true);
    expect(await probes.answer("agt_same", { nonce, address: "198.51.100.7" })).toEqual([]);
  });

  it("flags a report that is not what the echo saw", async () => {
    const nonce = await start("agt_liar");
    await probes.echo(nonce, "198.51.100.7");
    await probes.answer("agt_liar", { nonce, address: "203.0.113.50" });
    const flag = await flagOf(EGRESS_MISMATCH, "agent:agt_liar");
    expect(flag?.severity).toBe(2);
    expect(flag?.evidence as EgressMismatchEvidence).toMatchObject({
      echoAddress: "198.51.100.7",
      reportedAddress: "203.0.113.50",
      problems: ["report_differs_from_echo"],
    });
  });

  it("flags an answer whose echo the hub never saw, and a failed echo at low severity", async () => {
    const unseen = await start("agt_unseen");
    await probes.answer("agt_unseen", { nonce: unseen, address: "198.51.100.7" });
    expect((await flagOf(EGRESS_MISMATCH, "agent:agt_unseen"))?.evidence).toMatchObject({ problems: ["echo_not_seen"] });
    const failed = await start("agt_failed");
    await probes.answer("agt_failed", { nonce: failed, address: null });
    const flag = await flagOf(EGRESS_MISMATCH, "agent:agt_failed");
    expect(flag).toMatchObject({ severity: 1, evidence: { problems: ["echo_failed"] } });
  });

  it("takes an echo once, for a known recent nonce; an answer once, from the probed agent", async () => {
    // An address of its own, so the owners of the other cases do not count towards it.
    const nonce = await start("agt_once", "usr_once", "198.51.100.20");
    expect(await probes.echo("unknown-nonce-0123456789", "198.51.100.20")).toBe(false);
    expect(await probes.echo(nonce, "198.51.100.20")).toBe(true);
    expect(await probes.echo(nonce, "203.0.113.9")).toBe(false);
    expect(await probes.answer("agt_other", { nonce, address: "198.51.100.20" })).toEqual([]);
    expect(await probes.answer("agt_once", { nonce, address: "198.51.100.20" })).toEqual([]);
    // A second answer to the same probe changes nothing.
    expect(await probes.answer("agt_once", { nonce, address: "203.0.113.9" })).toEqual([]);
    expect(await flagOf(EGRESS_MISMATCH, "agent:agt_once")).toBeNull();
    // A probe older than the echo window takes no echo.
    const old = await start("agt_old");
    await database.db
      .$executeRaw`UPDATE egress_probes SET created_at = now() - make_interval(secs => ${EGRESS_ECHO_WINDOW_MS / 1000 + 1}) WHERE nonce = ${old}`;
    expect(await probes.echo(old, "198.51.100.20")).toBe(false);
  });

  it("flags each owner beyond the limit behind one egress address, not the first ones", async () => {
    for (const owner of ["usr_n1", "usr_n2", "usr_n3"]) {
      const nonce = await start(`agt_${owner}`, owner, "192.0.2.80");
      await probes.echo(nonce, "192.0.2.80");
      await probes.answer(`agt_${owner}`, { nonce, address: "192.0.2.80" });
    }
    expect(await flagOf(SHARED_EGRESS, "user:usr_n1")).toBeNull();
    expect(await flagOf(SHARED_EGRESS, "user:usr_n2")).toBeNull();
    expect((await flagOf(SHARED_EGRESS, "user:usr_n3"))?.evidence).toMatchObject({ address: "192.0.2.80", ownerCount: 3, ownersPerAddressMax: 2 });
    // Below the limit or not, owners behind one address are linked accounts (the self-dealing detector reads them).
    const links = await linksOf(viaPrisma(database.db), "usr_n1");
    expect(links.map((l) => [l.linkedUserId, l.kind]).sort()).toEqual([
      ["usr_n2", SHARED_EGRESS],
      ["usr_n3", SHARED_EGRESS],
    ]);
  });
  it("prunes probes older than the retention, which outlasts the share window, and keeps the rest", async () => {
    expect(EGRESS_PROBE_RETENTION_MS).toBeGreaterThan(EGRESS_SHARE_WINDOW_MS + EGRESS_ECHO_WINDOW_MS);
    const count = async () => (await database.db.$queryRaw<{ n: bigint }[]>`SELECT count(*) AS n FROM egress_probes`)[0]!.n;
    const stale = await start("agt_stale");
    const kept = await start("agt_kept");
    // Age one row past the retention, the other to just inside it.
    await database.db.$executeRaw`
      UPDATE egress_probes SET created_at = now() - make_interval(secs => ${EGRESS_PROBE_RETENTION_MS / 1000 + 60}) WHERE nonce = ${stale}`;
    await database.db.$executeRaw`
      UPDATE egress_probes SET created_at = now() - make_interval(secs => ${EGRESS_PROBE_RETENTION_MS / 1000 - 3600}) WHERE nonce = ${kept}`;
    const before = await count();
    expect(await probes.prune()).toBe(1);
    expect(await count()).toBe(before - 1n);
    const left = await database.db.egressProbe.findMany({ where: { nonce: { in: [stale, kept] } }, select: { nonce: true } });
    expect(left.map((r) => r.nonce)).toEqual([kept]);
    // A clock two hours on: the kept row has passed the retention too; nothing younger goes.
    expect(await probes.prune(Date.now() + 2 * 3600 * 1000)).toBe(1);
    expect(await count()).toBe(before - 2n);
    // At the end of every row's retention, the table is empty.
    await probes.prune(Date.now() + EGRESS_PROBE_RETENTION_MS + 60_000);
    expect(await count()).toBe(0n);
  });
});
