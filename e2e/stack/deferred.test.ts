/**
 * Background responses (`background: true`) through the real gateway, Deno agent and mock provider, with the
 * official `openai` client: the create call answers at once with the response queued and the worst case stays
 * held past it; the gateway polls the response through the creating agent until it ends and settles once — the
 * user charged exactly the final usage, the owner paid official × tier, the agent's receipt signed for the
 * create call's request id. A cancel mid-run charges what was used; the agent away meanwhile, or the gateway
 * killed and replaced, delays the settlement but does not lose or double it; another user's key reaches none of it.
 */
import pg from "pg";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE } from "@wellspring/db";
import { Ledger, ownerAccount } from "../../gateway/src/billing/ledger.ts";
import { officialCostMicros, ownerEarningMicros, TIER_BPS } from "../../gateway/src/billing/prices.ts";
import { journalSum, startAgentProc, startGatewayProc, fundedUser as fundedUserKey, startPricedStack, waitFor, type Stack } from "./harness.ts";

const GATEWAY_ENV = { BILLING_ENABLED: "1", BILLING_DEFERRED_FIRST_POLL_MS: "200", BILLING_DEFERRED_POLL_MAX_MS: "400" };

let stack: Stack;
let pool: pg.Pool;
let ledger: Ledger;
let closeStack: (() => Promise<void>) | undefined;
beforeAll(async () => {
  ({ stack, pool, ledger, close: closeStack } = await startPricedStack({ gatewayEnv: GATEWAY_ENV }));
}, 120_000);
afterAll(async () => {
  await closeStack?.();
});

const price = DEFAULT_PRICE_TABLE.find((p) => p.model === "gpt-4o-mini")!;

async function fundedUser(micros: bigint) {
  const { userId, secret } = await fundedUserKey(stack, ledger, micros, "background");
  return { userId, client: new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: secret, maxRetries: 0 }) };
}

interface Row {
  state: string;
  settled_by: string | null;
  attempts: number;
  held_micros: string;
}
const row = async (requestId: string) =>
  (await pool.query<Row>("SELECT state::text, settled_by, attempts, held_micros::text FROM deferred_settlements WHERE request_id = $1", [requestId])).rows[0];

interface Reservation {
  status: string;
  amount_micros: string;
  charge_micros: string | null;
  earning_micros: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
  end_cause: string | null;
}
const reservation = async (requestId: string) =>
  (
    await pool.query<Reservation>(
      "SELECT status::text, amount_micros::text, charge_micros::text, earning_micros::text, input_tokens, output_tokens, end_cause::text FROM reservations WHERE request_id = $1",
      [requestId],
    )
  ).rows[0];

async function settledRow(requestId: string, timeoutMs = 20_000): Promise<Row> {
  await waitFor(async () => (await row(requestId))?.state === "settled", timeoutMs);
  return (await row(requestId))!;
}

/** The usage the provider holds for a response now (read at the mock itself, as the owner's account would show it). */
async function providerUsage(id: string): Promise<{ status: string; input: number; output: number }> {
  const res = await fetch(`${stack.mock.origin}/v1/responses/${id}`, { headers: { authorization: "Bearer sk-test-owner-openai-key-123" } });
  const r = (await res.json()) as {
    status: string;
    usage: { input_tokens: number; output_tokens: number } | null;
  };
  return { status: r.status, input: r.usage?.input_tokens ?? 0, output: r.usage?.output_tokens ?? 0 };
}

const journal = (account: string, requestId: string) => journalSum(pool, account, requestId);

const pollsAtMock = (id: string) => stack.mock.requests.filter((r) => r.method === "GET" && r.path === `/v1/responses/${id}`).length;

/** Creates a background response; returns it with the create call's request id. */
async function createBackground(client: OpenAI, directives: string) {
  const { data, response } = await client.responses
    .create({ model: "gpt-4o-mini", input: `write it [mock ${directives}]`, background: true, max_output_tokens: 2_000 })
    .withResponse();
  return { response: data, requestId: response.headers.get("x-wellspring-request-id")! };
}

describe("background responses", () => {
  it("answer at once, stay held past the call, then settle once with the final usage: the user charged it, the owner paid, a receipt signed", async () => {
    const { userId, client } = await fundedUser(5_000_000n);
    const { response, requestId } = await createBackground(client, "bg_queue_ms=200 bg_run_ms=1500 input_tokens=20 output_tokens=40");
    expect(response).toMatchObject({ status: "queued", background: true, usage: null });
    // Held past the call (written as the create call ends): a reservation of its own at the worst case, no charge yet.
    await waitFor(async () => (await row(requestId)) !== undefined);
    const pending = await row(requestId);
    expect(pending).toMatchObject({ state: "pending" });
    expect(await reservation(requestId)).toMatchObject({ status: "held", charge_micros: null, amount_micros: pending!.held_micros });
    expect(BigInt(pending!.held_micros)).toBeGreaterThan(0n);

    const done = await settledRow(requestId);
    expect(done.settled_by).toBe("completed");
    const official = officialCostMicros({ inputTokens: 20, outputTokens: 40, cachedInputTokens: 0 }, price);
    expect(await reservation(requestId)).toMatchObject({
      status: "settled",
      charge_micros: official.toString(),
      earning_micros: ownerEarningMicros(official, TIER_BPS.A).toString(),
      input_tokens: 20,
      output_tokens: 40,
      end_cause: "completed",
    });
    expect(await journal(`user:${userId}`, requestId)).toBe(-official);
    expect(await journal(ownerAccount(stack.ownerId), requestId)).toBe(ownerEarningMicros(official, TIER_BPS.A));
    // Polled through the creating agent until it ended; the user's own retrieve shows the same object.
    expect(pollsAtMock(response.id)).toBeGreaterThanOrEqual(2);
    expect(await client.responses.retrieve(response.id)).toMatchObject({ status: "completed", usage: { input_tokens: 20, output_tokens: 40 } });
    // The request record carries the charge; the agent signed its receipt for the create call's request id.
    const record = await pool.query<{ user_charge_micros: string; output_tokens: number }>(
      "SELECT user_charge_micros::text, output_tokens FROM request_records WHERE id = $1",
      [requestId],
    );
    expect(record.rows[0]).toMatchObject({ user_charge_micros: official.toString(), output_tokens: 40 });
    await waitFor(async () => (await pool.query("SELECT 1 FROM agent_receipts WHERE request_id = $1", [requestId])).rowCount === 1, 15_000);
    // Settled once: more polls or retrieves change nothing; the books balance.
    expect((await pool.query("SELECT 1 FROM journal_entries WHERE request_id = $1 AND kind = 'usage'", [requestId])).rowCount).toBe(1);
    await waitFor(
      async () => (await pool.query<{ r: string }>("SELECT reserved_micros::text AS r FROM wallets WHERE user_id = $1", [userId])).rows[0]!.r === "0",
    );
    expect((await ledger.audit()).problems).toEqual([]);
  }, 60_000);

  it("a cancel mid-run is charged what the provider used until then", async () => {
    const { client } = await fundedUser(5_000_000n);
    const { response, requestId } = await createBackground(client, "bg_run_ms=20000 input_tokens=30 output_tokens=1000");
    await waitFor(async () => (await client.responses.retrieve(response.id)).status === "in_progress");
    await new Promise((r) => setTimeout(r, 500)); // let it make some output
    const cancelled = await client.responses.cancel(response.id);
    expect(cancelled.status).toBe("cancelled");
    const used = await providerUsage(response.id);
    expect(used.output).toBeGreaterThan(0);
    expect(used.output).toBeLessThan(1000);
    expect((await settledRow(requestId)).settled_by).toBe("cancelled");
    const official = officialCostMicros({ inputTokens: used.input, outputTokens: used.output, cachedInputTokens: 0 }, price);
    expect(await reservation(requestId)).toMatchObject({
      charge_micros: official.toString(),
      input_tokens: used.input,
      output_tokens: used.output,
      end_cause: "client_cancelled",
    });
  }, 60_000);

  it("another user's key cannot retrieve, cancel or delete it (404); its owner cannot delete it before it is settled (409)", async () => {
    const victim = await fundedUser(5_000_000n);
    const other = await fundedUser(5_000_000n);
    const { response, requestId } = await createBackground(victim.client, "bg_run_ms=4000 input_tokens=10 output_tokens=10");
    for (const attempt of [
      () => other.client.responses.retrieve(response.id),
      () => other.client.responses.cancel(response.id),
      () => other.client.responses.delete(response.id),
    ]) {
      const error = await attempt().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.NotFoundError);
      expect((error as Error).message).toContain(`Response with id '${response.id}' not found.`);
    }
    const early = await victim.client.responses.delete(response.id).catch((e: unknown) => e);
    expect(early).toBeInstanceOf(OpenAI.ConflictError);
    expect((await providerUsage(response.id)).status).not.toBe("cancelled");
    expect((await settledRow(requestId)).settled_by).toBe("completed");
    expect(await reservation(requestId)).toMatchObject({ input_tokens: 10, output_tokens: 10 });
    // Settled: now it may go.
    expect(await victim.client.responses.delete(response.id)).toMatchObject({ deleted: true });
  }, 60_000);

  it("a client that leaves a background stream early: the response runs on and is settled when it ends", async () => {
    const { client } = await fundedUser(5_000_000n);
    const { data: stream, response: head } = await client.responses
      .create({
        model: "gpt-4o-mini",
        input: "go [mock chunks=50 delay_ms=50 bg_run_ms=1500 input_tokens=15 output_tokens=50]",
        background: true,
        stream: true,
      })
      .withResponse();
    const requestId = head.headers.get("x-wellspring-request-id")!;
    let id = "";
    for await (const event of stream) {
      if (event.type === "response.created") {
        id = event.response.id;
        break; // leaves: the client closes the stream
      }
    }
    expect(id).toMatch(/^resp_/);
    expect((await settledRow(requestId)).settled_by).toBe("completed");
    expect(await reservation(requestId)).toMatchObject({ input_tokens: 15, output_tokens: 50 });
  }, 60_000);

  it("a background stream that ends with its usage settles at once, with no deferred row", async () => {
    const { client } = await fundedUser(5_000_000n);
    const { data: stream, response: head } = await client.responses
      .create({ model: "gpt-4o-mini", input: "go [mock chunks=3 bg_run_ms=200 input_tokens=9 output_tokens=3]", background: true, stream: true })
      .withResponse();
    const requestId = head.headers.get("x-wellspring-request-id")!;
    let last = "";
    for await (const event of stream) last = event.type;
    expect(last).toBe("response.completed");
    await waitFor(async () => (await reservation(requestId))?.status === "settled");
    expect(await reservation(requestId)).toMatchObject({ input_tokens: 9, output_tokens: 3 });
    expect(await row(requestId)).toBeUndefined();
  }, 30_000);

  it("the agent away while it runs: the settlement waits for it, then happens once", async () => {
    const { client } = await fundedUser(5_000_000n);
    const { response, requestId } = await createBackground(client, "bg_run_ms=1000 input_tokens=11 output_tokens=22");
    const { dataDir, agentId } = stack.agent;
    await waitFor(async () => (await row(requestId)) !== undefined);
    await stack.agent.stop();
    // Past its end, the agent still away: nothing settles (no one can read the response).
    await waitFor(async () => (await providerUsage(response.id)).status === "completed");
    const attemptsBefore = (await row(requestId))!.attempts;
    await new Promise((r) => setTimeout(r, 1_000)); // several poll rounds would have come and gone
    expect(await row(requestId)).toMatchObject({ state: "pending", attempts: attemptsBefore });
    stack.agent = await startAgentProc(dataDir, agentId, stack.mock.origin);
    expect((await settledRow(requestId, 30_000)).settled_by).toBe("completed");
    expect(await reservation(requestId)).toMatchObject({ input_tokens: 11, output_tokens: 22 });
    await waitFor(async () => (await pool.query("SELECT 1 FROM agent_receipts WHERE request_id = $1", [requestId])).rowCount === 1, 20_000);
  }, 90_000);

  it("the gateway killed while it runs: the row survives and the next gateway settles it", async () => {
    const { userId, client } = await fundedUser(5_000_000n);
    const { response, requestId } = await createBackground(client, "bg_run_ms=1500 input_tokens=13 output_tokens=26");
    const { apiOrigin, agentOrigin, dataDir } = stack.gateway;
    await waitFor(async () => (await row(requestId)) !== undefined);
    await stack.gateway.stop("SIGKILL");
    await waitFor(async () => (await providerUsage(response.id)).status === "completed");
    expect(await row(requestId)).toMatchObject({ state: "pending" });
    stack.gateway = await startGatewayProc(
      stack.database.url,
      { ...GATEWAY_ENV, GATEWAY_PORT: new URL(apiOrigin).port, AGENT_PORT: new URL(agentOrigin).port },
      dataDir,
    );
    expect((await settledRow(requestId, 60_000)).settled_by).toBe("completed");
    const official = officialCostMicros({ inputTokens: 13, outputTokens: 26, cachedInputTokens: 0 }, price);
    expect(await journal(`user:${userId}`, requestId)).toBe(-official);
    // The dead gateway's lease is swept; the held reservation was never part of it.
    await waitFor(async () => (await ledger.audit()).ok, 60_000);
  }, 120_000);
});
