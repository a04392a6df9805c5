/**
 * Tenancy in the portal's data layer: every function, handed another account's object ids, finds nothing,
 * changes nothing, and leaves the other account's data as it was. (Pages and server actions reach data
 * only through these functions, with the signed-in actor.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { createTestDatabase, fund, type TestDatabase } from "../../../e2e/stack/harness.ts";
import type { Actor } from "./actor.ts";

let database: TestDatabase;
let keys: typeof import("./keys.ts");
let usage: typeof import("./usage.ts");
let accounts: typeof import("./accounts.ts");
let owner: typeof import("./owner.ts");
let risk: typeof import("./risk.ts");
let prices: typeof import("./prices.ts");
let actorMod: typeof import("./actor.ts");
let admin: typeof import("./admin.ts");
let content: typeof import("./content.ts");
let billing: typeof import("./billing.ts");
let alice: Actor;
let bob: Actor;
let aliceKeyId: string;

const actor = (userId: string, email: string): Actor => ({ userId, email, name: null, isOwner: false, isAdmin: false });

beforeAll(async () => {
  database = await createTestDatabase();
  process.env.DATABASE_URL = database.url;
  process.env.NEXTAUTH_URL = "http://portal.test:3000"; // links in the mail a taken address's sign-up sends
  keys = await import("./keys.ts");
  usage = await import("./usage.ts");
  accounts = await import("./accounts.ts");
  owner = await import("./owner.ts");
  risk = await import("./risk.ts");
  prices = await import("./prices.ts");
  actorMod = await import("./actor.ts");
  admin = await import("./admin.ts");
  content = await import("./content.ts");
  billing = await import("./billing.ts");
  for (const [name, pw] of [
    ["alice", "alice-password-1"],
    ["bob", "bob-password-22"],
  ] as const) {
    expect(await accounts.signUp({ email: `${name}@tenant.test`, password: pw, name, owner: false }, { clientAddress: "192.0.2.1" })).toEqual({ ok: true });
  }
  const users = await database.db.user.findMany({ orderBy: { email: "asc" } });
  alice = actor(users[0]!.id, users[0]!.email);
  bob = actor(users[1]!.id, users[1]!.email);
  await fund(database.url, alice.userId, 3_000_000n);
  aliceKeyId = (
    await keys.createKey(alice, {
      name: "alice-key",
      allowedModels: [],
      rpmLimit: 60,
      tpmLimit: null,
      concurrencyLimit: null,
      monthlyBudgetMicros: null,
      expiresAt: null,
    })
  ).id;
  await database.db.requestRecord.create({
    data: {
      id: newId("req"),
      userId: alice.userId,
      keyId: aliceKeyId,
      gatewayId: "gw_test",
      route: "/v1/chat/completions",
      provider: "openai",
      model: "gpt-4o-mini",
      httpStatus: 200,
      endCause: "completed",
      startedAt: new Date(),
      durationMs: 12,
      userChargeMicros: 42n,
    },
  });
  // A background response of Alice's still running (its charge waits for its end).
  await database.db.$executeRaw`INSERT INTO deferred_settlements (request_id, user_id, agent_id, model, object_id, held_micros, pricing,
    worst_input_tokens, worst_output_tokens, record, last_status)
    VALUES (${newId("req")}, ${alice.userId}, 'agt_x', 'gpt-4o-mini', 'resp_alice', 7000, '{}'::jsonb, 10, 20, '{}'::jsonb, 'in_progress')`;
}, 120_000);

afterAll(async () => {
  await database?.drop();
});

describe("another tenant's ids", () => {
  const cases: [string, () => Promise<unknown>, unknown][] = [
    ["listKeys shows only the caller's keys", async () => (await keys.listKeys(bob)).map((k) => k.id), []],
    ["revokeKey of another's key reports not found", () => keys.revokeKey(bob, aliceKeyId), false],
    [
      "updateKeyRestriction of another's key reports not found",
      () => keys.updateKeyRestriction(bob, aliceKeyId, { ownerEmails: [], minAgentTier: "S" }),
      false,
    ],
    ["usagePage filtered by another's key finds nothing", () => usage.usagePage(bob, { keyId: aliceKeyId }), []],
    ["usagePage unfiltered shows only the caller's requests", () => usage.usagePage(bob, {}), []],
    ["balance is the caller's own", async () => (await usage.balance(bob)).availableMicros, 0n],
    ["spendByModel is the caller's own", () => usage.spendByModel(bob), []],
    ["pendingDeferred is the caller's own", () => billing.pendingDeferred(bob), { rows: [], count: 0, heldMicros: 0n }],
  ];
  for (const [name, run, expected] of cases) {
    it(name, async () => {
      expect(await run()).toEqual(expected);
    });
  }

  it("changes nothing of the owner's data", async () => {
    const key = await database.db.virtualKey.findUniqueOrThrow({ where: { id: aliceKeyId } });
    expect(key.status).toBe("active");
    expect(key.minAgentTier).toBeNull();
    expect((await usage.usagePage(alice, { keyId: aliceKeyId })).map((r) => r.chargeMicros)).toEqual([42n]);
    expect((await usage.balance(alice)).availableMicros).toBe(3_000_000n);
    expect(await billing.pendingDeferred(alice)).toMatchObject({
      rows: [{ kind: "response", objectId: "resp_alice", model: "gpt-4o-mini", heldMicros: 7000n, lastStatus: "in_progress" }],
      count: 1,
      heldMicros: 7000n,
    });
    expect(await keys.revokeKey(alice, aliceKeyId)).toBe(true);
  });

  it("a password change needs the current password and touches only the caller", async () => {
    expect(await accounts.changePassword(bob, "alice-password-1", "new-password-123")).toEqual({
      ok: false,
      errors: { current: "This is not your current password." },
    });
    expect(await accounts.changePassword(bob, "bob-password-22", "short")).toMatchObject({
      ok: false,
      errors: { password: expect.stringMatching(/at least 10/) },
    });
    expect(await accounts.changePassword(bob, "bob-password-22", "new-password-123")).toEqual({ ok: true });
    const { verifyPassword } = await import("@wellspring/db");
    const [a, b] = await Promise.all([
      database.db.user.findUniqueOrThrow({ where: { id: alice.userId } }),
      database.db.user.findUniqueOrThrow({ where: { id: bob.userId } }),
    ]);
    expect(await verifyPassword("alice-password-1", a.passwordHash)).toBe(true);
    expect(await verifyPassword("new-password-123", b.passwordHash)).toBe(true);
    expect(await verifyPassword("bob-password-22", b.passwordHash)).toBe(false);
  });

  it("sign-up answers a taken email as a new one and changes nothing of the account; weak input gets field errors", async () => {
    const before = await database.db.user.findUniqueOrThrow({ where: { id: alice.userId } });
    expect(await accounts.signUp({ email: "ALICE@tenant.test", password: "whatever-long-1", name: "", owner: true }, { clientAddress: "192.0.2.1" })).toEqual({
      ok: true,
    });
    expect(await database.db.user.findUniqueOrThrow({ where: { id: alice.userId } })).toEqual(before);
    expect(await accounts.signUp({ email: "nope", password: "short", name: "", owner: false }, { clientAddress: "192.0.2.1" })).toMatchObject({
      ok: false,
      errors: { email: expect.any(String), password: expect.any(String) },
    });
  });
});

describe("roles and other owners' agents", () => {
  let carolAgent: string;
  const carol = (): Actor => ({ ...actor("", "carol@tenant.test"), isOwner: true });
  const dave = (): Actor => ({ ...actor("", "dave@tenant.test"), isOwner: true });
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    for (const name of ["carol", "dave"]) {
      ids[name] = newId("usr");
      await database.db.user.create({ data: { id: ids[name], email: `${name}@tenant.test`, isOwner: true } });
    }
    carolAgent = newId("agt");
    await database.db.agent.create({ data: { id: carolAgent, ownerId: ids.carol!, name: "carol-agent", publicKey: `pk-${carolAgent}` } });
  });

  const as = (who: "carol" | "dave"): Actor => ({ ...(who === "carol" ? carol() : dave()), userId: ids[who]! });

  it("an owner lists only their agents and cannot switch another owner's", async () => {
    expect((await owner.listAgents(as("dave"))).map((a) => a.id)).toEqual([]);
    expect(await owner.updateAgent(as("dave"), carolAgent, { paused: true, discountLane: true })).toBe(false);
    const agent = await database.db.agent.findUniqueOrThrow({ where: { id: carolAgent } });
    expect({ status: agent.status, discountLane: agent.discountLane }).toEqual({ status: "active", discountLane: false });
    // Joining the discount lane is a request: only an administrator's approval puts the agent in it.
    expect(await owner.updateAgent(as("carol"), carolAgent, { discountLane: true })).toBe(true);
    const [requested] = await owner.listAgents(as("carol"));
    expect([requested!.id, requested!.discountLane, requested!.discountLaneRequestedAt instanceof Date]).toEqual([carolAgent, false, true]);
    await expect(admin.decideLane(as("carol"), carolAgent, true, "self-approved")).rejects.toBeInstanceOf(actorMod.Forbidden);
    expect((await database.db.agent.findUniqueOrThrow({ where: { id: carolAgent } })).discountLane).toBe(false);
    const root: Actor = { ...actor(bob.userId, bob.email), isAdmin: true }; // an administrator
    expect(await admin.decideLane(root, carolAgent, true, "")).toBe("note_required");
    expect((await admin.laneRequests(root)).map((r) => r.agentId)).toEqual([carolAgent]);
    expect(await admin.decideLane(root, carolAgent, false, "not yet: too new")).toBe("done");
    expect(await admin.decideLane(root, carolAgent, true, "again")).toBe("no_request");
    const [refused] = await owner.listAgents(as("carol"));
    expect([refused!.discountLane, refused!.discountLaneRequestedAt, refused!.discountLaneDecision?.note]).toEqual([false, null, "not yet: too new"]);
    expect(await owner.updateAgent(as("carol"), carolAgent, { discountLane: true })).toBe(true);
    expect(await admin.decideLane(root, carolAgent, true, "track record checked")).toBe("done");
    expect((await owner.listAgents(as("carol"))).map((a) => [a.id, a.discountLane, a.discountLaneRequestedAt])).toEqual([[carolAgent, true, null]]);
    const trail = await database.db.auditEvent.findMany({
      where: { subject: `agent:${carolAgent}`, action: { startsWith: "agent.discount_lane" } },
      orderBy: { id: "asc" },
    });
    expect(trail.map((e) => [e.action, e.actor])).toEqual([
      ["agent.discount_lane_refused", `user:${bob.userId}`],
      ["agent.discount_lane_approved", `user:${bob.userId}`],
    ]);
    // Leaving takes effect at once, without an administrator.
    expect(await owner.updateAgent(as("carol"), carolAgent, { discountLane: false })).toBe(true);
    expect((await database.db.agent.findUniqueOrThrow({ where: { id: carolAgent } })).discountLane).toBe(false);
  });

  it("an owner sets their agent's rate mode (validated and audited) and cannot set another owner's", async () => {
    const expert = { rateMode: "expert", rpm: "120", tpm: "", concurrency: "4" };
    expect(await owner.setAgentRate(as("dave"), carolAgent, expert)).toEqual({ ok: false, errors: { form: "No such agent of yours." } });
    expect((await database.db.agent.findUniqueOrThrow({ where: { id: carolAgent } })).rateMode).toBe("auto");
    const bad = await owner.setAgentRate(as("carol"), carolAgent, { rateMode: "expert", rpm: "1.5", tpm: "-3", concurrency: "" });
    expect(bad.ok ? null : Object.keys(bad.errors).sort()).toEqual(["rpm", "tpm"]);
    const none = await owner.setAgentRate(as("carol"), carolAgent, { rateMode: "expert", rpm: "", tpm: "", concurrency: "" });
    expect(none.ok ? null : none.errors.rpm).toMatch(/at least one limit/);
    expect(await owner.setAgentRate(as("carol"), carolAgent, { rateMode: "fast" })).toEqual({ ok: false, errors: { rateMode: "Rate mode: auto or expert." } });
    expect(await owner.setAgentRate(as("carol"), carolAgent, expert)).toEqual({ ok: true });
    const agent = await database.db.agent.findUniqueOrThrow({ where: { id: carolAgent } });
    expect([agent.rateMode, agent.rpmLimit, agent.tpmLimit, agent.concurrencyLimit]).toEqual(["expert", 120, null, 4]);
    expect(await database.db.auditEvent.count({ where: { action: "agent.rate_updated", subject: `agent:${carolAgent}` } })).toBe(1);
    const row = (await owner.listAgents(as("carol")))[0]!;
    expect([row.rateMode, row.rpmLimit, row.concurrencyLimit, row.reported]).toEqual(["expert", 120, 4, null]);
    expect(await owner.setAgentRate(as("carol"), carolAgent, { rateMode: "auto", rpm: "5" })).toEqual({ ok: true });
    const auto = await database.db.agent.findUniqueOrThrow({ where: { id: carolAgent } });
    expect([auto.rateMode, auto.rpmLimit, auto.concurrencyLimit]).toEqual(["auto", null, null]);
  });

  it("an admin-suspended agent cannot be resumed by its owner", async () => {
    await database.db.agent.update({ where: { id: carolAgent }, data: { status: "suspended" } });
    await expect(owner.updateAgent(as("carol"), carolAgent, { paused: false })).rejects.toThrow(/suspended by an administrator/);
    expect((await database.db.agent.findUniqueOrThrow({ where: { id: carolAgent } })).status).toBe("suspended");
  });

  it("owner and admin functions refuse accounts without the role, and change nothing", async () => {
    const flagId = await risk.raiseFlag({ kind: "self_dealing", subject: `user:${bob.userId}`, severity: 2, evidence: { ip: "203.0.113.9" } });
    const refusals: [string, () => Promise<unknown>][] = [
      ["createEnrollment", () => owner.createEnrollment(bob, "x")],
      ["listAgents", () => owner.listAgents(bob)],
      ["earnings", () => owner.earnings(bob)],
      ["requestPayout", () => owner.requestPayout(bob, 1n)],
      ["setAgentRate", () => owner.setAgentRate(bob, carolAgent, { rateMode: "auto" })],
      ["flagQueue", () => risk.flagQueue(as("carol"), "open")],
      ["decideFlag", () => risk.decideFlag(as("carol"), flagId, "suspended", "no")],
      ["reviewFlag", () => risk.reviewFlag(bob, flagId)],
      ["actOnFlagAs", () => risk.actOnFlagAs(as("carol"), flagId, "suspend_subject", "no")],
      ["actOnFlagAs (hold)", () => risk.actOnFlagAs(bob, flagId, "hold_earnings", "no")],
      ["publishDraft", () => prices.publishDraft(bob, [], "x")],
      ["searchAccounts", () => admin.searchAccounts(as("carol"), "")],
      ["setUserStatus", () => admin.setUserStatus(as("carol"), bob.userId, "suspended", "x")],
      ["setAgent", () => admin.setAgent(as("dave"), carolAgent, { tier: "S" })],
      ["createBatch", () => admin.createBatch(bob, { amountMicros: 1n, count: 1, note: "", expiresAt: null })],
      ["systemStatus", () => admin.systemStatus(bob)],
      ["contentRules", () => content.contentRules(bob)],
      ["addRule", () => content.addRule(as("carol"), "default", "anything")],
      ["removeRule", () => content.removeRule(bob, "cr_x")],
    ];
    for (const [name, run] of refusals) await expect(run(), name).rejects.toBeInstanceOf(actorMod.Forbidden);
    expect((await database.db.riskFlag.findUniqueOrThrow({ where: { id: flagId } })).status).toBe("open");
    expect(await database.db.auditEvent.count({ where: { subject: `flag:${flagId}` } })).toBe(0);
    expect(await database.db.earningHold.count({ where: { flagId } })).toBe(0);
    expect((await database.db.user.findUniqueOrThrow({ where: { id: bob.userId } })).status).toBe("active");
    expect(await database.db.enrollmentToken.count({ where: { ownerId: bob.userId } })).toBe(0);
    expect(await database.db.priceVersion.count()).toBe(0);
    expect(await database.db.redemptionBatch.count()).toBe(0);
    expect(await database.db.contentRule.count()).toBe(0);
    expect((await database.db.agent.findUniqueOrThrow({ where: { id: carolAgent } })).tier).toBe("A");
  });
});
