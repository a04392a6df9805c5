/**
 * Account links and the self-dealing detector against a real PostgreSQL: a shared signal links both accounts
 * (at most LINK_PEERS_PER_SIGNAL_MAX others per signal), values are keyed, the gateway's link set is cached for
 * its TTL (a clock injected), and a linked settlement is held with RISK_LINKED_EARNINGS=hold and only flagged with
 * `flag`; an unlinked one does nothing. The cached check's cost is measured.
 */
import { describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { useTestDatabase } from "../../../e2e/support/test_database.ts";
import { LINK_PEERS_PER_SIGNAL_MAX, LinkedAccounts, linkValueKey, recordSignal, viaPrisma } from "./account_links.ts";
import { LINKED_ACCOUNTS, SelfDealingDetector } from "./linked_accounts.ts";

const testDatabase = useTestDatabase();

const run = () => viaPrisma(testDatabase().db);
const holdOf = (requestId: string) => testDatabase().db.earningHold.findUnique({ where: { requestId } });
const flagOf = (ownerId: string) => testDatabase().db.riskFlag.findFirst({ where: { kind: LINKED_ACCOUNTS, subject: `user:${ownerId}`, status: "open" } });

describe("account links", () => {
  it("a shared signal links both accounts, once per kind; another value links nobody", async () => {
    const [a, b, c] = [newId("usr"), newId("usr"), newId("usr")];
    const key = linkValueKey("secret", "device", "dev-1");
    expect(key).not.toContain("dev-1");
    expect(linkValueKey("other secret", "device", "dev-1")).not.toBe(key);
    expect(await recordSignal(run(), { userId: a, kind: "device", valueKey: key })).toEqual([]);
    expect(await recordSignal(run(), { userId: b, kind: "device", valueKey: key })).toEqual([a]);
    expect(await recordSignal(run(), { userId: b, kind: "device", valueKey: key })).toEqual([a]);
    expect(await recordSignal(run(), { userId: c, kind: "device", valueKey: linkValueKey("secret", "device", "dev-2") })).toEqual([]);
    const links = new LinkedAccounts(run());
    expect((await links.of(a)).get(b)).toEqual(new Map([["device", 2]]));
    expect((await links.of(b)).get(a)).toEqual(new Map([["device", 2]]));
    expect((await links.of(c)).size).toBe(0);
  });

  it("one signal links at most LINK_PEERS_PER_SIGNAL_MAX other accounts (a shared office address does not link everyone)", async () => {
    const key = linkValueKey("secret", "signin_address", "192.0.2.1");
    for (let i = 0; i < LINK_PEERS_PER_SIGNAL_MAX + 5; i++) await recordSignal(run(), { userId: newId("usr"), kind: "signin_address", valueKey: key });
    const last = newId("usr");
    expect(await recordSignal(run(), { userId: last, kind: "signin_address", valueKey: key })).toHaveLength(LINK_PEERS_PER_SIGNAL_MAX);
  });

  it("a user's link set is read once per TTL: a new link counts once the cached set expires", async () => {
    let now = 0;
    const links = new LinkedAccounts(run(), () => now, 60_000);
    const [a, b] = [newId("usr"), newId("usr")];
    expect((await links.of(a)).size).toBe(0);
    const key = linkValueKey("secret", "payout_destination", "iban-x");
    await recordSignal(run(), { userId: a, kind: "payout_destination", valueKey: key });
    await recordSignal(run(), { userId: b, kind: "payout_destination", valueKey: key });
    expect((await links.of(a)).size).toBe(0);
    now = 60_000;
    expect([...(await links.of(a)).keys()]).toEqual([b]);
  });
});

describe("self-dealing detector", () => {
  async function linkedPair(): Promise<{ owner: string; user: string }> {
    const [owner, user] = [newId("usr"), newId("usr")];
    const key = linkValueKey("secret", "device", newId("usr"));
    await recordSignal(run(), { userId: owner, kind: "device", valueKey: key });
    await recordSignal(run(), { userId: user, kind: "device", valueKey: key });
    return { owner, user };
  }
  const served = (userId: string, ownerId: string) => ({ requestId: newId("req"), userId, agentId: "agt_x", ownerId, earningMicros: 1_234n });

  it("hold mode: a linked request raises the owner's flag with kinds and counts, and holds its earning", async () => {
    const { owner, user } = await linkedPair();
    const detector = new SelfDealingDetector(testDatabase().db, new LinkedAccounts(run()), "hold");
    const request = served(user, owner);
    expect(await detector.check(request, Promise.resolve())).toBe(true);
    expect(await holdOf(request.requestId)).toMatchObject({ ownerId: owner, reason: LINKED_ACCOUNTS, amountMicros: 1_234n, status: "held" });
    const flag = await flagOf(owner);
    expect(flag?.evidence).toMatchObject({ ownerId: owner, users: [user], kinds: ["device"], requests: 1, heldMicros: "1234", mode: "hold" });
    // The owner serving their own request is the plainest case.
    const own = served(owner, owner);
    expect(await detector.check(own, Promise.resolve())).toBe(true);
    expect((await flagOf(owner))?.evidence).toMatchObject({ users: [user, owner], kinds: ["device", "same_account"], requests: 2, heldMicros: "2468" });
  });

  it("flag mode: flagged, nothing held; a settlement never written holds nothing either", async () => {
    const { owner, user } = await linkedPair();
    const flagOnly = new SelfDealingDetector(testDatabase().db, new LinkedAccounts(run()), "flag");
    const request = served(user, owner);
    expect(await flagOnly.check(request, Promise.resolve())).toBe(true);
    expect(await holdOf(request.requestId)).toBeNull();
    expect((await flagOf(owner))?.evidence).toMatchObject({ heldMicros: "0", mode: "flag" });
    const unwritten = served(user, owner);
    const hold = new SelfDealingDetector(testDatabase().db, new LinkedAccounts(run()), "hold");
    expect(await hold.check(unwritten, Promise.reject(new Error("ledger away")))).toBe(true);
    expect(await holdOf(unwritten.requestId)).toBeNull();
  });

  it("an unlinked request raises nothing; the cached check costs microseconds", async () => {
    const detector = new SelfDealingDetector(testDatabase().db, new LinkedAccounts(run()));
    const [owner, user] = [newId("usr"), newId("usr")];
    const request = served(user, owner);
    expect(await detector.check(request, Promise.resolve())).toBe(false);
    expect(await flagOf(owner)).toBeNull();
    const checks = 20_000;
    const started = process.hrtime.bigint();
    for (let i = 0; i < checks; i++) await detector.linkBetween(user, owner);
    const perCheckNs = Number(process.hrtime.bigint() - started) / checks;
    console.log(`linked_accounts: cached check ${perCheckNs.toFixed(0)} ns per settlement (${checks} checks)`);
    expect(perCheckNs).toBeLessThan(50_000);
  });
});
