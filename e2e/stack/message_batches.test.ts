/**
 * Anthropic Message Batches through the real gateway, Deno agent and mock provider, with the official
 * `@anthropic-ai/sdk` client: the create body is read as it streams through and its worst case held at batch
 * prices; the batch lives at the creating agent (retrieve, cancel, results, delete reach it; another user's key
 * gets 404); the hub answers the list from its own rows; once the batch has ended, its results are read through the
 * agent and the succeeded messages' usage charged once at batch prices, the owner paid batch official × tier.
 * The mock's batches run on a clock the test moves.
 */
import pg from "pg";
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE } from "@wellspring/db";
import { Ledger, ownerAccount } from "../../gateway/src/billing/ledger.ts";
import { BATCH_PRICE_BPS, officialCostMicros, ownerEarningMicros, scaledPrice, TIER_BPS } from "../../gateway/src/billing/prices.ts";
import { journalSum, fundedUser as fundedUserKey, startPricedStack, waitFor, type Stack } from "./harness.ts";

/** The batch body limit this stack runs with (small, so a test can pass it), bytes. */
const BATCH_BODY_BYTES_MAX = 256 * 1024;
const GATEWAY_ENV = {
  BILLING_ENABLED: "1",
  BILLING_DEFERRED_FIRST_POLL_MS: "200",
  BILLING_DEFERRED_POLL_MAX_MS: "400",
  MESSAGE_BATCH_BODY_BYTES_MAX: String(BATCH_BODY_BYTES_MAX),
};
const MODEL = "claude-haiku-4-5";

let clock = Date.now();
let stack: Stack;
let pool: pg.Pool;
let ledger: Ledger;
let closeStack: (() => Promise<void>) | undefined;
beforeAll(async () => {
  ({ stack, pool, ledger, close: closeStack } = await startPricedStack({ gatewayEnv: GATEWAY_ENV, mockOptions: { now: () => clock } }));
}, 120_000);
afterAll(async () => {
  await closeStack?.();
});

const price = DEFAULT_PRICE_TABLE.find((p) => p.model === MODEL)!;
const batchPrice = scaledPrice(price, BATCH_PRICE_BPS);

async function fundedUser(micros: bigint) {
  const { userId, secret } = await fundedUserKey(stack, ledger, micros, "batches");
  return { userId, key: secret, client: new Anthropic({ baseURL: stack.baseUrl, apiKey: secret, maxRetries: 0 }) };
}

const request = (id: string, text: string, maxTokens = 500) => ({
  custom_id: id,
  params: { model: MODEL, max_tokens: maxTokens, messages: [{ role: "user" as const, content: text }] },
});

interface Row {
  state: string;
  settled_by: string | null;
  held_micros: string;
  charge_micros: string | null;
}
const row = async (requestId: string) =>
  (await pool.query<Row>("SELECT state::text, settled_by, held_micros::text, charge_micros::text FROM deferred_settlements WHERE request_id = $1", [requestId]))
    .rows[0];
const reservation = async (requestId: string) =>
  (
    await pool.query<{ status: string; amount_micros: string; charge_micros: string | null; earning_micros: string | null; input_tokens: number | null }>(
      "SELECT status::text, amount_micros::text, charge_micros::text, earning_micros::text, input_tokens FROM reservations WHERE request_id = $1",
      [requestId],
    )
  ).rows[0];
const journal = (account: string, requestId: string) => journalSum(pool, account, requestId);
const createsAtMock = () => stack.mock.requests.filter((r) => r.method === "POST" && r.path.startsWith("/v1/messages/batches")).length;

async function create(client: Anthropic, requests: ReturnType<typeof request>[]) {
  const { data, response } = await client.messages.batches.create({ requests }).withResponse();
  return { batch: data, requestId: response.headers.get("x-wellspring-request-id")! };
}

async function settled(requestId: string, timeoutMs = 20_000): Promise<Row> {
  await waitFor(async () => (await row(requestId))?.state === "settled", timeoutMs);
  return (await row(requestId))!;
}

describe("message batches", () => {
  it("are held at batch prices while they run, then charged once from their results: the owner paid, results byte-exact, listed, deleted", async () => {
    const { userId, key, client } = await fundedUser(5_000_000n);
    const { batch, requestId } = await create(client, [
      request("a", "first [mock bg_run_ms=1000 input_tokens=10 output_tokens=4]"),
      request("b", "second [mock status=400]"),
      request("c", "third [mock input_tokens=3 output_tokens=2 cache_read=50 cache_write=7]"),
    ]);
    expect(batch).toMatchObject({ type: "message_batch", processing_status: "in_progress", results_url: null, request_counts: { processing: 3 } });
    // Held past the call at the batch's worst case (every request's params bytes in, max_tokens out) at batch prices.
    await waitFor(async () => (await row(requestId)) !== undefined);
    const pending = (await row(requestId))!;
    expect(pending.state).toBe("pending");
    const held = BigInt(pending.held_micros);
    expect(held).toBeGreaterThanOrEqual(officialCostMicros({ inputTokens: 0, outputTokens: 1_500, cachedInputTokens: 0 }, batchPrice));
    expect(await reservation(requestId)).toMatchObject({ status: "held", charge_micros: null, amount_micros: pending.held_micros });

    // The batch ends on the provider's clock; the user's retrieve makes the row due at once.
    clock += 2_000;
    const ended = await client.messages.batches.retrieve(batch.id);
    expect(ended).toMatchObject({ processing_status: "ended", request_counts: { succeeded: 2, errored: 1, processing: 0 } });
    // The results are handed out through the hub, never at the provider's host with the hub key.
    expect(ended.results_url).toBe(`/v1/messages/batches/${batch.id}/results`);

    const done = await settled(requestId);
    expect(done.settled_by).toBe("ended");
    // Succeeded messages only: a's 10 + 4, c's 3 + 50 cache reads + 7 cache writes in, 2 out; b (errored) is free.
    const usage = { inputTokens: 70, outputTokens: 6, cachedInputTokens: 50 };
    const official = officialCostMicros(usage, batchPrice);
    expect(official).toBeLessThan(officialCostMicros(usage, price));
    expect(await reservation(requestId)).toMatchObject({
      status: "settled",
      charge_micros: official.toString(),
      earning_micros: ownerEarningMicros(official, TIER_BPS.A).toString(),
      input_tokens: 70,
    });
    expect(await journal(`user:${userId}`, requestId)).toBe(-official);
    expect(await journal(ownerAccount(stack.ownerId), requestId)).toBe(ownerEarningMicros(official, TIER_BPS.A));

    // The results as the SDK reads them, and byte for byte as the provider wrote them.
    const results: { custom_id: string; result: { type: string } }[] = [];
    for await (const line of await client.messages.batches.results(batch.id)) results.push(line);
    expect(results.map((r) => [r.custom_id, r.result.type])).toEqual([
      ["a", "succeeded"],
      ["b", "errored"],
      ["c", "succeeded"],
    ]);
    const headers = { "x-api-key": key, "anthropic-version": "2023-06-01" };
    const viaHub = await (await fetch(`${stack.baseUrl}/v1/messages/batches/${batch.id}/results`, { headers })).text();
    const atProvider = await (await fetch(`${stack.mock.origin}/v1/messages/batches/${batch.id}/results`, { headers: { "x-api-key": "sk-ant-owner" } })).text();
    expect(viaHub).toBe(atProvider);

    // Settled once: another retrieve changes nothing.
    await client.messages.batches.retrieve(batch.id);
    await new Promise((r) => setTimeout(r, 600));
    expect(await journal(`user:${userId}`, requestId)).toBe(-official);

    // The list is the hub's: this user's batches, newest first, as they last passed through the hub.
    const second = await create(client, [request("z", "later [mock bg_run_ms=1000]")]);
    const page = await client.messages.batches.list({ limit: 1 });
    expect(page.data.map((b) => b.id)).toEqual([second.batch.id]);
    expect(page.has_more).toBe(true);
    const next = await client.messages.batches.list({ limit: 5, after_id: second.batch.id });
    expect(next.data.map((b) => [b.id, b.processing_status])).toEqual([[batch.id, "ended"]]);

    // A settled batch is deleted at its provider, and leaves the hub's routes and list.
    expect(await client.messages.batches.delete(batch.id)).toEqual({ id: batch.id, type: "message_batch_deleted" });
    await expect(client.messages.batches.retrieve(batch.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    expect((await client.messages.batches.list()).data.map((b) => b.id)).toEqual([second.batch.id]);
    clock += 2_000;
    await settled(second.requestId);
  });

  it("cancelled mid-run: what ran is charged, the rest (canceled) is not", async () => {
    const { userId, client } = await fundedUser(5_000_000n);
    const { batch, requestId } = await create(client, [
      request("x", "one [mock bg_run_ms=1000 input_tokens=8 output_tokens=5]"),
      request("y", "two [mock input_tokens=9 output_tokens=9]"),
    ]);
    clock += 600;
    const cancelling = await client.messages.batches.cancel(batch.id);
    expect(cancelling.processing_status).toBe("canceling");
    expect(cancelling.cancel_initiated_at).not.toBeNull();
    clock += 200;
    await settled(requestId);
    const official = officialCostMicros({ inputTokens: 8, outputTokens: 5, cachedInputTokens: 0 }, batchPrice);
    expect(await journal(`user:${userId}`, requestId)).toBe(-official);
    expect(await client.messages.batches.retrieve(batch.id)).toMatchObject({ processing_status: "ended", request_counts: { succeeded: 1, canceled: 1 } });
  });

  it("another user's key reaches none of it (404, Anthropic's shape); its owner cannot delete it before it is settled (409)", async () => {
    const owner = await fundedUser(5_000_000n);
    const other = await fundedUser(5_000_000n);
    const { batch, requestId } = await create(owner.client, [request("p", "private [mock bg_run_ms=5000]")]);
    for (const attempt of [
      () => other.client.messages.batches.retrieve(batch.id),
      () => other.client.messages.batches.cancel(batch.id),
      () => other.client.messages.batches.delete(batch.id),
    ]) {
      const error = await attempt().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Anthropic.NotFoundError);
      expect((error as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({ type: "error", error: { type: "not_found_error" } });
    }
    const results = await fetch(`${stack.baseUrl}/v1/messages/batches/${batch.id}/results`, {
      headers: { "x-api-key": other.key, "anthropic-version": "2023-06-01" },
    });
    expect(results.status).toBe(404);
    expect((await other.client.messages.batches.list()).data).toEqual([]);
    // Its owner's delete while the batch runs: 409, the batch kept (its results are still to be read for its usage).
    const conflict = await owner.client.messages.batches.delete(batch.id).catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(Anthropic.APIError);
    expect((conflict as InstanceType<typeof Anthropic.APIError>).status).toBe(409);
    clock += 6_000;
    await settled(requestId);
  });

  it("refuses, before the provider sees a whole body: a repeated custom_id, two models, no max_tokens, malformed JSON, too large, too little credit", async () => {
    const { client, key } = await fundedUser(5_000_000n);
    const before = createsAtMock();
    const raw = (body: string) =>
      fetch(`${stack.baseUrl}/v1/messages/batches`, {
        method: "POST",
        headers: { "x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json" },
        body,
      });
    for (const [body, message] of [
      [JSON.stringify({ requests: [request("a", "1"), request("a", "2")] }), /custom_id 'a'/],
      [
        JSON.stringify({ requests: [request("a", "1"), { custom_id: "b", params: { ...request("b", "2").params, model: "claude-sonnet-4-5" } }] }),
        /one model per batch/,
      ],
      [JSON.stringify({ requests: [{ custom_id: "a", params: { model: MODEL, messages: [] } }] }), /max_tokens: Field required/],
      [`{"requests":[${JSON.stringify(request("a", "1"))}],"requests":[]}`, /repeats the field `requests`/],
      ['{"requests":[{"custom_id":"a","params":{"model":"claude-haiku-4-5",}}]}', /not valid JSON/],
    ] as const) {
      const res = await raw(body);
      expect(res.status, body.slice(0, 80)).toBe(400);
      const error = (await res.json()) as { type: string; error: { type: string; message: string } };
      expect(error).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
      expect(error.error.message).toMatch(message);
    }
    const huge = await client.messages.batches
      .create({ requests: [request("big", "x".repeat(BATCH_BODY_BYTES_MAX))] })
      .catch((e: unknown) => e as InstanceType<typeof Anthropic.APIError>);
    expect(huge).toBeInstanceOf(Anthropic.APIError);
    expect((huge as InstanceType<typeof Anthropic.APIError>).status).toBe(413);
    expect((huge as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: "error", error: { type: "request_too_large" } });

    const poor = await fundedUser(1n);
    const refused = await poor.client.messages.batches
      .create({ requests: [request("a", "1", 64_000)] })
      .catch((e: unknown) => e as InstanceType<typeof Anthropic.APIError>);
    expect(refused).toBeInstanceOf(Anthropic.APIError);
    expect((refused as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: "error",
      error: { message: expect.stringMatching(/credit balance is too low/) },
    });
    expect(createsAtMock()).toBe(before);
  });
});
