/**
 * Self-dealing through the real gateway, a real Deno agent and the portal's own sign-up, sign-in, redeem and
 * payout-destination code (what its server actions and next-auth's authorize call): users linked to the agent's
 * owner — by a device cookie, a sign-in address, a redemption batch, a payout destination, or being the owner —
 * send requests that the owner's agent serves. Each raises the owner's `linked_accounts` flag (link kinds and
 * counts, no content) and its earning is held out of what the owner may withdraw; the owner's earnings page says
 * why. An unlinked user's request earns normally. No test step writes a link or a flag.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashPassword } from "@wellspring/db";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { Treasury } from "../../gateway/src/ops/treasury.ts";
import type { PortalActor } from "../support/portal_http.ts";
import { fund, startStack, TEST_USER_FUNDING_MICROS, waitFor, type Stack } from "./harness.ts";

/** The portal's server-side functions this test calls (web/lib), as its server actions and next-auth call them. */
type Actor = PortalActor;
interface Portal {
  auth: { authorizeSignin(input: { email: string; password: string; clientAddress: string; deviceId?: string | null }): Promise<unknown> };
  accounts: {
    signUp(
      input: { email: string; password: string; name: string; owner: boolean },
      context: { clientAddress: string; deviceId?: string | null },
    ): Promise<{ ok: boolean }>;
  };
  billing: { redeemCode(actor: Actor, code: string): Promise<{ ok: boolean }> };
  owner: {
    setPayoutDestination(actor: Actor, text: string): Promise<string | null>;
    earnings(actor: Actor): Promise<{
      unrequestedMicros: bigint;
      held: { totalMicros: bigint; reasons: { text: string }[] };
      payoutDestination: string | null;
    }>;
  };
}
/** Imported by path at run time: the portal compiles under its own tsconfig (Next.js types), not this one. */
const PORTAL_LIB = "../../web/lib";

let stack: Stack;
let pool: pg.Pool;
let auth: Portal["auth"];
let accounts: Portal["accounts"];
let billing: Portal["billing"];
let owner: Portal["owner"];

beforeAll(async () => {
  stack = await startStack({ gatewayEnv: { BILLING_ENABLED: "1" } });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
  // The portal's data layer runs in this process against the stack's database, as `npm start` runs it.
  process.env.DATABASE_URL = stack.database.url;
  process.env.NEXTAUTH_SECRET = "linked-accounts-test-secret";
  auth = (await import(`${PORTAL_LIB}/auth.ts`)) as Portal["auth"];
  accounts = (await import(`${PORTAL_LIB}/data/accounts.ts`)) as Portal["accounts"];
  billing = (await import(`${PORTAL_LIB}/data/billing.ts`)) as Portal["billing"];
  owner = (await import(`${PORTAL_LIB}/data/owner.ts`)) as Portal["owner"];
}, 120_000);
afterAll(async () => {
  await pool?.end();
  await stack?.close();
});

const PASSWORD = "linked accounts password 1";
const PROMPT = "a question about tide tables in Porto";
/** What the portal's device cookie holds (web/lib/device.ts): 16 random bytes, base64url. */
const newDevice = () => randomBytes(16).toString("base64url");

interface Person {
  id: string;
  email: string;
  actor: Actor;
  apiKey: string;
}

/** Signs up through the portal's sign-up (from `address`, with the `device` cookie), then gets a funded key. */
async function signUp(label: string, address: string, device: string, isOwner = false): Promise<Person> {
  const email = `${label}-${randomBytes(4).toString("hex")}@linked.test`;
  expect(await accounts.signUp({ email, password: PASSWORD, name: label, owner: isOwner }, { clientAddress: address, deviceId: device })).toEqual({
    ok: true,
  });
  const user = await stack.db.user.findUniqueOrThrow({ where: { email } });
  const key = await issueKey(stack.db, user.id, "linked");
  await fund(stack.database.url, user.id, TEST_USER_FUNDING_MICROS);
  return { id: user.id, email, actor: { userId: user.id, email, name: label, isOwner, isAdmin: false }, apiKey: key.secret };
}

/** Signs in through next-auth's authorize (the portal's sign-in) from `address` with the `device` cookie. */
async function signIn(p: { email: string }, address: string, device: string): Promise<void> {
  await auth.authorizeSignin({ email: p.email, password: PASSWORD, clientAddress: address, deviceId: device });
}

/** One chat call with the person's key; the request id. */
async function call(apiKey: string): Promise<string> {
  const res = await new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey, maxRetries: 0 }).chat.completions
    .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: PROMPT }] })
    .withResponse();
  return res.response.headers.get("x-wellspring-request-id")!;
}

async function earningOf(requestId: string): Promise<bigint> {
  let earning: bigint | null = null;
  await waitFor(async () => {
    const r = await pool.query<{ earning_micros: string }>("SELECT earning_micros FROM reservations WHERE request_id = $1 AND status = 'settled'", [requestId]);
    earning = r.rows[0] ? BigInt(r.rows[0].earning_micros) : null;
    return earning !== null;
  });
  return earning!;
}

const holdOf = async (requestId: string) =>
  (
    await pool.query<{ reason: string; amount_micros: string; owner_id: string }>(
      "SELECT reason, amount_micros, owner_id FROM earning_holds WHERE request_id = $1",
      [requestId],
    )
  ).rows;

interface LinkedFlag {
  id: string;
  raised_count: number;
  evidence: { ownerId: string; users: string[]; kinds: string[]; requests: number; requestIds: string[]; heldMicros: string; mode: string };
}
const linkedFlags = async () =>
  (
    await pool.query<LinkedFlag>("SELECT id, raised_count, evidence FROM risk_flags WHERE kind = 'linked_accounts' AND subject = $1 AND status = 'open'", [
      `user:${stack.ownerId}`,
    ])
  ).rows;

describe("requests between linked accounts", () => {
  const ownerDevice = newDevice();
  const ownerAddress = "203.0.113.10";
  let ownerPerson: Person;
  const linkedRequests = new Map<string, string>();

  it("the owner signs in and sets a payout destination; their own request through their agent is held (same_account)", async () => {
    // The harness made the owner without a password: give it one, as a password reset would.
    const ownerUser = await stack.db.user.update({ where: { id: stack.ownerId }, data: { passwordHash: await hashPassword(PASSWORD) } });
    await signIn(ownerUser, ownerAddress, ownerDevice);
    const ownerActor: Actor = { userId: ownerUser.id, email: ownerUser.email, name: null, isOwner: true, isAdmin: false };
    expect(await owner.setPayoutDestination(ownerActor, "IBAN DE89 3704 0044 0532 0130 00")).toBeNull();
    const key = await issueKey(stack.db, stack.ownerId, "own");
    await fund(stack.database.url, stack.ownerId, TEST_USER_FUNDING_MICROS);
    ownerPerson = { id: stack.ownerId, email: ownerUser.email, actor: ownerActor, apiKey: key.secret };

    const requestId = await call(ownerPerson.apiKey);
    const earning = await earningOf(requestId);
    expect(earning).toBeGreaterThan(0n);
    await waitFor(async () => (await holdOf(requestId)).length === 1, 5_000);
    expect(await holdOf(requestId)).toEqual([{ reason: "linked_accounts", amount_micros: earning.toString(), owner_id: stack.ownerId }]);
    linkedRequests.set("same_account", requestId);
  });

  it("users linked by a device cookie, a sign-in address, a redemption batch and a payout destination: each request is flagged and held", async () => {
    // The same browser (device cookie) signs up a second account.
    const byDevice = await signUp("device", "198.51.100.1", ownerDevice);
    // Another account signs in from the owner's sign-in address.
    const byAddress = await signUp("address", "198.51.100.2", newDevice());
    await signIn(byAddress, ownerAddress, newDevice());
    // The owner and another account redeem codes of one small batch.
    const batch = await new Treasury(pool).createRedemptionBatch("admin-api", { amountMicros: 1_000_000n, count: 2, note: "two codes" });
    const byBatch = await signUp("batch", "198.51.100.3", newDevice());
    expect(await billing.redeemCode(ownerPerson.actor, batch.codes[0]!)).toMatchObject({ ok: true });
    expect(await billing.redeemCode(byBatch.actor, batch.codes[1]!)).toMatchObject({ ok: true });
    // Another owner account gives the same payout destination (spaces and case differ).
    const byPayout = await signUp("payout", "198.51.100.4", newDevice(), true);
    expect(await owner.setPayoutDestination(byPayout.actor, "iban de89370400440532013000")).toBeNull();

    for (const [kind, person] of [
      ["device", byDevice],
      ["signin_address", byAddress],
      ["redemption_batch", byBatch],
      ["payout_destination", byPayout],
    ] as const) {
      const requestId = await call(person.apiKey);
      const earning = await earningOf(requestId);
      await waitFor(async () => (await holdOf(requestId)).length === 1, 5_000);
      expect(await holdOf(requestId), kind).toEqual([{ reason: "linked_accounts", amount_micros: earning.toString(), owner_id: stack.ownerId }]);
      linkedRequests.set(kind, requestId);
    }

    await waitFor(async () => (await linkedFlags())[0]?.evidence.requests === 5, 5_000);
    const [flag] = await linkedFlags();
    expect(flag!.evidence.ownerId).toBe(stack.ownerId);
    expect(flag!.evidence.mode).toBe("hold");
    expect(new Set(flag!.evidence.users)).toEqual(new Set([stack.ownerId, byDevice.id, byAddress.id, byBatch.id, byPayout.id]));
    expect(new Set(flag!.evidence.kinds)).toEqual(new Set(["same_account", "device", "signin_address", "redemption_batch", "payout_destination"]));
    expect(flag!.evidence.requestIds).toEqual([...linkedRequests.values()]);
    const held = (await Promise.all([...linkedRequests.values()].map(earningOf))).reduce((a, b) => a + b, 0n);
    expect(BigInt(flag!.evidence.heldMicros)).toBe(held);
    // Ids, kinds and counts only: nothing of the prompt, the addresses, the device ids or the destination.
    const evidence = JSON.stringify(flag!.evidence);
    for (const secret of [PROMPT, "Porto", ownerAddress, ownerDevice, "DE89", "de8937"]) expect(evidence).not.toContain(secret);
    const signals = await pool.query<{ value_key: string }>("SELECT value_key FROM account_signals WHERE kind <> 'redemption_batch'");
    for (const s of signals.rows) expect([ownerAddress, ownerDevice, "198.51.100.1"]).not.toContain(s.value_key);
  });

  it("an unlinked user's request earns as usual: no hold, not in the flag; the owner sees why the rest is held", async () => {
    const other = await signUp("unlinked", "198.51.100.9", newDevice());
    await signIn(other, "198.51.100.9", newDevice());
    // A batch of more codes than REDEMPTION_BATCH_LINK_CODES_MAX is a promotion: redeeming from it links nobody.
    const promo = await new Treasury(pool).createRedemptionBatch("admin-api", { amountMicros: 1_000_000n, count: 21, note: "promotion" });
    expect(await billing.redeemCode(ownerPerson.actor, promo.codes[0]!)).toMatchObject({ ok: true });
    expect(await billing.redeemCode(other.actor, promo.codes[1]!)).toMatchObject({ ok: true });
    // Both sign in from loopback (a local portal): that address links nobody either.
    await signIn(other, "127.0.0.1", newDevice());
    await signIn(ownerPerson, "127.0.0.1", newDevice());

    const requestId = await call(other.apiKey);
    const earning = await earningOf(requestId);
    expect(earning).toBeGreaterThan(0n);
    // The detector runs after the settlement is written; a linked request's hold is there within ms of it.
    await new Promise((r) => setTimeout(r, 500));
    expect(await holdOf(requestId)).toEqual([]);
    const [flag] = await linkedFlags();
    expect(flag!.evidence.users).not.toContain(other.id);
    expect(flag!.evidence.requests).toBe(5);

    // What the owner may withdraw is the unlinked request's earning; the earnings page says why the rest is held.
    const treasury = new Treasury(pool);
    const balance = await treasury.ownerBalance(stack.ownerId);
    const held = BigInt(flag!.evidence.heldMicros);
    expect(balance - held).toBe(earning);
    expect((await treasury.requestPayout(stack.ownerId, balance)).outcome).toBe("insufficient_earnings");
    const page = await owner.earnings(ownerPerson.actor);
    expect(page.unrequestedMicros).toBe(earning);
    expect(page.held.totalMicros).toBe(held);
    expect(page.held.reasons.map((r) => r.text)).toEqual([expect.stringContaining("linked to yours")]);
    expect(page.payoutDestination).toBe("IBAN DE89 3704 0044 0532 0130 00");
  });
});
