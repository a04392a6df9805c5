/**
 * Key fingerprint reuse against a real PostgreSQL: a fingerprint held by another owner's agent raises a severity-2
 * flag on the reporting owner, one held only by the same owner's other agent severity 1, a revoked agent's keys do
 * not count, and an agent alone with its keys raises nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { linksOf, viaPrisma } from "./account_links.ts";
import { checkKeyReuse, KEY_FINGERPRINT_REUSE, type KeyReuseEvidence } from "./key_reuse.ts";

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
}, 60_000);
afterAll(async () => {
  await database?.drop();
});

async function agentOf(ownerId: string, keyFingerprints: string[], status: "active" | "revoked" = "active"): Promise<string> {
  await database.db.user.upsert({ where: { id: ownerId }, create: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true }, update: {} });
  const id = newId("agt");
  await database.db.agent.create({ data: { id, ownerId, name: id, publicKey: `pk_${id}`, keyFingerprints, status } });
  return id;
}

const flagOf = (ownerId: string) => database.db.riskFlag.findFirst({ where: { kind: KEY_FINGERPRINT_REUSE, subject: `user:${ownerId}` } });

describe("key fingerprint reuse", () => {
  it("raises nothing for an agent alone with its keys, or sharing only with a revoked agent", async () => {
    await agentOf("usr_gone", ["kfp_revoked"], "revoked");
    const id = await agentOf("usr_alone", ["kfp_alone", "kfp_revoked"]);
    expect(await checkKeyReuse(database.db, { id, ownerId: "usr_alone" }, ["kfp_alone", "kfp_revoked"])).toBeNull();
    expect(await flagOf("usr_alone")).toBeNull();
  });

  it("flags the owner at severity 1 when only their own other agent holds the key", async () => {
    await agentOf("usr_two_machines", ["kfp_own"]);
    const id = await agentOf("usr_two_machines", ["kfp_own"]);
    await checkKeyReuse(database.db, { id, ownerId: "usr_two_machines" }, ["kfp_own"]);
    const flag = await flagOf("usr_two_machines");
    expect(flag?.severity).toBe(1);
    expect((flag?.evidence as KeyReuseEvidence).crossOwner).toBe(false);
  });

  it("flags the owner at severity 2 when another owner's agent holds the key, naming the agents and fingerprints", async () => {
    const first = await agentOf("usr_lender", ["kfp_shared", "kfp_other"]);
    const id = await agentOf("usr_borrower", ["kfp_shared", "kfp_mine"]);
    await checkKeyReuse(database.db, { id, ownerId: "usr_borrower" }, ["kfp_shared", "kfp_mine"]);
    const flag = await flagOf("usr_borrower");
    expect(flag?.severity).toBe(2);
    expect(flag?.evidence).toEqual({ agentId: id, fingerprints: ["kfp_shared"], others: [{ agentId: first, ownerId: "usr_lender" }], crossOwner: true });
    // The two owners are linked accounts: requests between them are self-dealing (linked_accounts.ts).
    expect((await linksOf(viaPrisma(database.db), "usr_lender")).map((l) => [l.linkedUserId, l.kind])).toEqual([["usr_borrower", "key_fingerprint"]]);
  });
});
