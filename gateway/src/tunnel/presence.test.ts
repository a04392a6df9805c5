/**
 * Presence: the judgement of a new connection against the current holder, and the compare-and-set writes
 * against a real PostgreSQL (two claimants at once: exactly one holds the agent; a replaced session cannot
 * renew or release itself back).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { claimPresence, judgeHolder, readHolder, releaseGatewayPresence, releasePresence, renewPresence, type Holder } from "./presence.ts";
import { announcePeer } from "../peers/directory.ts";

describe("judgeHolder", () => {
  const me = { gatewayId: "gw_me", previousSessionId: null, isLocalSession: (s: string) => s === "ses_local" };
  const held = (h: Partial<Holder>): Holder => ({ sessionId: "ses_x", gatewayId: "gw_other", address: "192.0.2.1", expired: false, ...h });

  it("claims an agent nobody holds", () => {
    expect(judgeHolder(held({ sessionId: null, gatewayId: null }), me)).toEqual({ action: "claim", expectHolder: null, requireExpired: false });
  });
  it("lets the agent take the place of the session it names as its own previous one, anywhere", () => {
    expect(judgeHolder(held({}), { ...me, previousSessionId: "ses_x" })).toEqual({ action: "claim", expectHolder: "ses_x", requireExpired: false });
  });
  it("probes a live session on this gateway", () => {
    expect(judgeHolder(held({ sessionId: "ses_local", gatewayId: "gw_me" }), me)).toEqual({ action: "probe", sessionId: "ses_local" });
    // …even one whose presence ran out in the database (a database outage stops renewals, not the agent).
    expect(judgeHolder(held({ sessionId: "ses_local", gatewayId: "gw_me", expired: true }), me)).toEqual({ action: "probe", sessionId: "ses_local" });
  });
  it("takes over a session of this gateway that is gone", () => {
    expect(judgeHolder(held({ sessionId: "ses_gone", gatewayId: "gw_me" }), me)).toEqual({ action: "claim", expectHolder: "ses_gone", requireExpired: false });
  });
  it("refuses while another gateway's session is alive, and takes over once its presence ran out", () => {
    expect(judgeHolder(held({}), me)).toEqual({ action: "refuse" });
    expect(judgeHolder(held({ expired: true }), me)).toEqual({ action: "claim", expectHolder: "ses_x", requireExpired: true });
  });
});

describe("presence writes", () => {
  let database: TestDatabase;
  let agentId: string;
  beforeAll(async () => {
    database = await createTestDatabase();
    const ownerId = newId("usr");
    await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@o.test`, isOwner: true } });
    agentId = newId("agt");
    await database.db.agent.create({ data: { id: agentId, ownerId, name: "a", publicKey: newId("hub") } });
  }, 60_000);
  afterAll(async () => {
    await database?.drop();
  });
  const claim = (sessionId: string, expectHolder: string | null, extra: { gatewayId?: string; requireExpired?: boolean; ttlMs?: number } = {}) =>
    claimPresence(database.db, {
      agentId,
      sessionId,
      gatewayId: extra.gatewayId ?? "gw_1",
      address: "127.0.0.1",
      ttlMs: extra.ttlMs ?? 60_000,
      expectHolder,
      requireExpired: extra.requireExpired ?? false,
    });

  it("lets exactly one of many simultaneous claimants hold the agent", async () => {
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => claim(`ses_c${i}`, null)));
    expect(results.filter(Boolean)).toHaveLength(1);
    const holder = await readHolder(database.db, agentId);
    expect(holder?.sessionId).toBe(`ses_c${results.indexOf(true)}`);
    expect(holder).toMatchObject({ gatewayId: "gw_1", address: "127.0.0.1", expired: false });
    await releasePresence(database.db, agentId, holder!.sessionId!);
    expect((await readHolder(database.db, agentId))?.sessionId).toBeNull();
  });

  it("keeps a replaced session from renewing or releasing the agent", async () => {
    expect(await claim("ses_old", null)).toBe(true);
    expect(await renewPresence(database.db, agentId, "ses_old", 60_000)).toBe(true);
    expect(await claim("ses_new", "ses_old", { gatewayId: "gw_2" })).toBe(true);
    expect(await renewPresence(database.db, agentId, "ses_old", 60_000)).toBe(false);
    await releasePresence(database.db, agentId, "ses_old");
    expect((await readHolder(database.db, agentId))?.sessionId).toBe("ses_new");
    // A claim judged against a holder that has since changed fails.
    expect(await claim("ses_late", "ses_old")).toBe(false);
    await releaseGatewayPresence(database.db, "gw_2");
    expect((await readHolder(database.db, agentId))?.sessionId).toBeNull();
  });

  it("takes an expired presence only once it has really run out, by the database's clock", async () => {
    expect(await claim("ses_live", null, { ttlMs: 60_000 })).toBe(true);
    expect(await claim("ses_copy", "ses_live", { gatewayId: "gw_2", requireExpired: true })).toBe(false);
    await releasePresence(database.db, agentId, "ses_live");
    // A time to live of 0 ms has run out by the next statement.
    expect(await claim("ses_short", null, { ttlMs: 0 })).toBe(true);
    expect((await readHolder(database.db, agentId))?.expired).toBe(true);
    expect(await claim("ses_copy", "ses_short", { gatewayId: "gw_2", requireExpired: true })).toBe(true);
  });

  it("counts a live presence held on a dead gateway (its directory row ran out) as expired, and only then", async () => {
    await releaseGatewayPresence(database.db, "gw_2");
    expect(await claim("ses_on_dead", null, { gatewayId: "gw_dead", ttlMs: 60_000 })).toBe(true);
    await announcePeer(database.db, { gatewayId: "gw_dead", url: "wss://127.0.0.1:1/gateway/v1/peer", pin: "sha256/x", secret: "s" }, 60_000);
    expect((await readHolder(database.db, agentId))?.expired).toBe(false);
    expect(await claim("ses_copy2", "ses_on_dead", { gatewayId: "gw_2", requireExpired: true })).toBe(false);
    // The gateway stopped renewing: a time to live of 0 ms has run out by the next statement.
    await announcePeer(database.db, { gatewayId: "gw_dead", url: "wss://127.0.0.1:1/gateway/v1/peer", pin: "sha256/x", secret: "s" }, 0);
    expect((await readHolder(database.db, agentId))?.expired).toBe(true);
    expect(await claim("ses_copy2", "ses_on_dead", { gatewayId: "gw_2", requireExpired: true })).toBe(true);
  });
});
