/**
 * What the portal records for account links, against a real PostgreSQL: sign-up and sign-in record the address
 * and device as keyed values (a null address, as the portal gives for loopback and unknown, records none), and a
 * payout destination is checked, kept for the admin, audited with a fingerprint only, and links owners who give
 * the same one however it is spaced or cased.
 */
import { describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { useTestDatabase } from "../../../e2e/support/test_database.ts";
import { linksOf, viaPrisma } from "../risk/account_links.ts";
import { PAYOUT_DESTINATION_CHARS_MAX, payoutDestinationProblem, recordAccountSeen, setPayoutDestination } from "./account_links.ts";

const testDatabase = useTestDatabase();

const SECRET = "account-links-test-secret";

async function owner(): Promise<string> {
  const id = newId("usr");
  await testDatabase().db.user.create({ data: { id, email: `${id}@owner.test`, isOwner: true } });
  return id;
}

describe("account links recorded by the portal", () => {
  it("sign-up and sign-in record the address and device keyed; a null address records nothing", async () => {
    const [a, b] = [await owner(), await owner()];
    await recordAccountSeen(testDatabase().db, SECRET, a, { at: "signup", addressKey: "203.0.113.7", deviceId: "dev-one" });
    await recordAccountSeen(testDatabase().db, SECRET, b, { at: "signin", addressKey: null, deviceId: "dev-one" });
    const signals = await testDatabase().db.accountSignal.findMany({ where: { userId: { in: [a, b] } }, orderBy: { kind: "asc" } });
    expect(signals.map((s) => [s.userId, s.kind])).toEqual([
      [a, "device"],
      [b, "device"],
      [a, "signup_address"],
    ]);
    for (const s of signals) expect(s.valueKey).not.toMatch(/203\.0\.113\.7|dev-one/);
    expect((await linksOf(viaPrisma(testDatabase().db), b)).map((l) => [l.linkedUserId, l.kind])).toEqual([[a, "device"]]);
  });

  it("a payout destination is checked, kept, audited by fingerprint, and links owners giving the same one", async () => {
    expect(payoutDestinationProblem("abc")).toMatch(/at least/);
    expect(payoutDestinationProblem("x".repeat(PAYOUT_DESTINATION_CHARS_MAX + 1))).toMatch(/at most/);
    expect(payoutDestinationProblem("line one\nline two")).toMatch(/one line/);
    const [a, b] = [await owner(), await owner()];
    expect(await setPayoutDestination(testDatabase().db, SECRET, a, "  PayPal: Owner.Name@example.com ")).toBeNull();
    expect((await testDatabase().db.user.findUniqueOrThrow({ where: { id: a } })).payoutDestination).toBe("PayPal: Owner.Name@example.com");
    const audit = await testDatabase().db.auditEvent.findFirstOrThrow({ where: { subject: `user:${a}`, action: "account.payout_destination_set" } });
    expect(JSON.stringify(audit.detail)).not.toMatch(/example|paypal/i);
    expect(await setPayoutDestination(testDatabase().db, SECRET, b, "paypal:ownername@example com")).toBeNull();
    expect((await linksOf(viaPrisma(testDatabase().db), a)).map((l) => [l.linkedUserId, l.kind])).toEqual([[b, "payout_destination"]]);
  });
});
