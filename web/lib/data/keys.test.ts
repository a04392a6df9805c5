/**
 * Key restrictions in the portal's data layer: which agents may serve a key (owners by email, lowest tier),
 * set when the key is created and changed later, only by the key's user; every change is announced to the
 * gateways (`key_changed`) inside the same transaction.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { HUB_EVENTS_CHANNEL, newId } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import type { Actor } from "./actor.ts";

let database: TestDatabase;
let keys: typeof import("./keys.ts");
let listener: pg.Client;
const events: string[] = [];
const actor = (userId: string, email: string): Actor => ({ userId, email, name: null, isOwner: false, isAdmin: false });
let alice: Actor;
let bob: Actor;
const owners = { one: "", two: "" };

const plainKey = { allowedModels: [], rpmLimit: null, tpmLimit: null, concurrencyLimit: null, monthlyBudgetMicros: null, expiresAt: null };

beforeAll(async () => {
  database = await createTestDatabase();
  process.env.DATABASE_URL = database.url;
  keys = await import("./keys.ts");
  const user = async (email: string, isOwner: boolean) => (await database.db.user.create({ data: { id: newId("usr"), email, isOwner } })).id;
  alice = actor(await user("alice@keys.test", false), "alice@keys.test");
  bob = actor(await user("bob@keys.test", false), "bob@keys.test");
  owners.one = await user("ops@owner-one.test", true);
  owners.two = await user("ops@owner-two.test", true);
  listener = new pg.Client({ connectionString: database.url });
  await listener.connect();
  listener.on("notification", (n) => events.push(n.payload ?? ""));
  await listener.query(`LISTEN ${HUB_EVENTS_CHANNEL}`);
}, 120_000);

afterAll(async () => {
  await listener?.end();
  await database?.drop();
});

/** Waits for the `key_changed` event of `keyId` (NOTIFY arrives after the commit, asynchronously). */
async function keyChanged(keyId: string): Promise<void> {
  const want = JSON.stringify({ kind: "key_changed", keyId });
  await expect.poll(() => events.includes(want), { timeout: 5_000, interval: 10 }).toBe(true);
}

describe("validation of the restriction fields", () => {
  it("accepts owners separated by commas or spaces, lower-cases and de-duplicates them, and the three tier choices", () => {
    expect(keys.validateRestriction({ owners: " Ops@Owner-One.test,  ops@owner-one.test ops@owner-two.test ", minTier: "S" })).toEqual({
      ok: true,
      restriction: { ownerEmails: ["ops@owner-one.test", "ops@owner-two.test"], minAgentTier: "S" },
    });
    expect(keys.validateRestriction({ owners: "", minTier: "" })).toEqual({ ok: true, restriction: { ownerEmails: [], minAgentTier: null } });
    expect(keys.validateRestriction({ minTier: "A" })).toEqual({ ok: true, restriction: { ownerEmails: [], minAgentTier: "A" } });
  });

  it("refuses what is not an email, too many owners and an unknown tier, each on its field", () => {
    expect(keys.validateRestriction({ owners: "ops@owner-one.test, nobody", minTier: "discount" })).toEqual({
      ok: false,
      errors: { allowedOwners: expect.stringContaining("“nobody” is not an email address"), minAgentTier: "Minimum tier: any, A or S." },
    });
    const many = Array.from({ length: keys.KEY_OWNERS_MAX + 1 }, (_, i) => `o${i}@x.test`).join(",");
    expect(keys.validateRestriction({ owners: many })).toEqual({ ok: false, errors: { allowedOwners: `At most ${keys.KEY_OWNERS_MAX} owners per key.` } });
  });

  it("the create form's validation carries the restriction and its errors beside the other fields'", () => {
    const base = { name: "k", models: "", rpm: "", budgetUsd: "", expires: "" };
    expect(keys.validateNewKey({ ...base, owners: "ops@owner-one.test", minTier: "A" })).toMatchObject({
      ok: true,
      key: { name: "k", ownerEmails: ["ops@owner-one.test"], minAgentTier: "A" },
    });
    expect(keys.validateNewKey({ ...base, name: "", owners: "x", minTier: "B" })).toEqual({
      ok: false,
      errors: { name: expect.any(String), allowedOwners: expect.any(String), minAgentTier: expect.any(String) },
    });
  });
});

describe("creating and editing a key's restriction", () => {
  it("a key created with owners and a tier stores their ids and shows their emails", async () => {
    const { id } = await keys.createKey(alice, {
      ...plainKey,
      name: "restricted",
      ownerEmails: ["ops@owner-two.test", "ops@owner-one.test"],
      minAgentTier: "S",
    });
    const row = await database.db.virtualKey.findUniqueOrThrow({ where: { id } });
    expect(row.allowedOwnerIds).toEqual([owners.two, owners.one]);
    expect(row.minAgentTier).toBe("S");
    const listed = (await keys.listKeys(alice)).find((k) => k.id === id)!;
    expect(listed.allowedOwners).toEqual(["ops@owner-two.test", "ops@owner-one.test"]);
    expect(listed.minAgentTier).toBe("S");
  });

  it("an email that is no agent owner's is refused on its field, the same whether an account has it or not; no key is made", async () => {
    const before = await database.db.virtualKey.count();
    for (const email of ["bob@keys.test", "nobody@keys.test"]) {
      const refused = keys.createKey(alice, { ...plainKey, name: "x", ownerEmails: ["ops@owner-one.test", email] });
      await expect(refused).rejects.toBeInstanceOf(keys.KeyInputError);
      await expect(refused).rejects.toMatchObject({ field: "allowedOwners", message: `No agent owner has the email “${email}”.` });
    }
    expect(await database.db.virtualKey.count()).toBe(before);
  });

  it("the user edits the restriction of their key; the change is audited and announced to the gateways", async () => {
    const { id } = await keys.createKey(alice, { ...plainKey, name: "edited" });
    expect((await keys.listKeys(alice)).find((k) => k.id === id)).toMatchObject({ allowedOwners: [], minAgentTier: null });
    expect(await keys.updateKeyRestriction(alice, id, { ownerEmails: ["ops@owner-one.test"], minAgentTier: "A" })).toBe(true);
    await keyChanged(id);
    expect(await database.db.virtualKey.findUniqueOrThrow({ where: { id } })).toMatchObject({ allowedOwnerIds: [owners.one], minAgentTier: "A" });
    const audit = await database.db.auditEvent.findFirstOrThrow({ where: { subject: `key:${id}`, action: "key.restricted" } });
    expect(audit.actor).toBe(`user:${alice.userId}`);
    // Back to any agent.
    events.length = 0;
    expect(await keys.updateKeyRestriction(alice, id, { ownerEmails: [], minAgentTier: null })).toBe(true);
    await keyChanged(id);
    expect((await keys.listKeys(alice)).find((k) => k.id === id)).toMatchObject({ allowedOwners: [], minAgentTier: null });
  });

  it("an edit naming an email that is no owner's changes nothing", async () => {
    const { id } = await keys.createKey(alice, { ...plainKey, name: "kept", ownerEmails: ["ops@owner-one.test"] });
    await expect(keys.updateKeyRestriction(alice, id, { ownerEmails: ["nobody@keys.test"], minAgentTier: "S" })).rejects.toMatchObject({
      field: "allowedOwners",
    });
    expect(await database.db.virtualKey.findUniqueOrThrow({ where: { id } })).toMatchObject({ allowedOwnerIds: [owners.one], minAgentTier: null });
  });

  it("another user's key, or a revoked one, is not found and stays as it was; no event goes out", async () => {
    const { id } = await keys.createKey(alice, { ...plainKey, name: "alice-only" });
    events.length = 0;
    expect(await keys.updateKeyRestriction(bob, id, { ownerEmails: ["ops@owner-two.test"], minAgentTier: "S" })).toBe(false);
    expect(await keys.revokeKey(alice, id)).toBe(true);
    await keyChanged(id); // the revocation's
    expect(await keys.updateKeyRestriction(alice, id, { ownerEmails: [], minAgentTier: "S" })).toBe(false);
    expect(await database.db.virtualKey.findUniqueOrThrow({ where: { id } })).toMatchObject({ allowedOwnerIds: [], minAgentTier: null, status: "revoked" });
    expect(await database.db.auditEvent.count({ where: { subject: `key:${id}`, action: "key.restricted" } })).toBe(0);
    expect(events.filter((e) => e === JSON.stringify({ kind: "key_changed", keyId: id }))).toHaveLength(1); // the revocation's only
  });
});
