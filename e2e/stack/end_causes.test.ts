/**
 * The charge rule for every way a request ends (docs/billing.md), through the real gateway, a real Deno
 * agent and the mock provider: the exact user charge and owner earning (official price × the tier in
 * force), whether it was estimated, and the end cause, read back from the ledger and the request record.
 *
 * Expected figures are computed here from what the test sent and what the client actually received:
 * estimated input = the o200k tokens of the request's JSON strings (each followed by a space), estimated
 * output = the o200k tokens of the delta text the client received.
 */
import pg from "pg";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE, newId } from "@wellspring/db";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { Ledger, ownerAccount } from "../../gateway/src/billing/ledger.ts";
import { officialCostMicros, ownerEarningMicros, TIER_BPS } from "../../gateway/src/billing/prices.ts";
import type { Usage } from "../../gateway/src/billing/usage.ts";
import { documentedInputEstimate } from "../../gateway/src/billing/testing/estimate_spec.ts";
import { adminFetch, fund, settledWallet, startStack, waitFor, type Stack } from "./harness.ts";

const HEAD_TIMEOUT_MS = 1_500;
const IDLE_TIMEOUT_MS = 1_500;

let stack: Stack;
let pool: pg.Pool;
beforeAll(async () => {
  stack = await startStack({
    gatewayEnv: { BILLING_ENABLED: "1", RESPONSE_HEAD_TIMEOUT_MS: String(HEAD_TIMEOUT_MS), STREAM_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS) },
  });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
  // The admin moves this agent to tier S; every charge below must pay the owner 0.9 of the official cost.
  const res = await adminFetch(stack.gateway.adminOrigin, `/admin/v1/agents/${stack.agent.agentId}`, { method: "PATCH", body: { tier: "S" } });
  expect(res.status).toBe(200);
  await waitFor(async () => (await pool.query("SELECT 1 FROM audit_events WHERE action = 'agent.updated'")).rowCount === 1);
}, 120_000);
afterAll(async () => {
  await pool?.end();
  await stack?.close();
});

const price = (model: string) => DEFAULT_PRICE_TABLE.find((p) => p.model === model)!;
const FUNDING = 10_000_000n; // $10

const inputEstimate = documentedInputEstimate;

interface Settled {
  charge: bigint;
  earning: bigint;
  estimated: boolean;
  endCause: string;
  tier: string;
  tierBps: number;
  priceVer: number;
  inputTokens: number;
  outputTokens: number;
}

async function settledReservation(requestId: string): Promise<Settled> {
  let row: Record<string, unknown> | undefined;
  await waitFor(async () => {
    row = (await pool.query("SELECT * FROM reservations WHERE request_id = $1 AND status = 'settled'", [requestId])).rows[0] as
      Record<string, unknown> | undefined;
    return Boolean(row);
  });
  const r = row!;
  return {
    charge: BigInt(r.charge_micros as string),
    earning: BigInt(r.earning_micros as string),
    estimated: r.estimated as boolean,
    endCause: r.end_cause as string,
    tier: r.tier as string,
    tierBps: r.tier_bps as number,
    priceVer: r.price_ver as number,
    inputTokens: r.input_tokens as number,
    outputTokens: r.output_tokens as number,
  };
}

async function user() {
  const userId = newId("usr");
  await stack.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  await fund(stack.database.url, userId, FUNDING);
  const key = await issueKey(stack.db, userId, "end-causes");
  return { userId, key: key.secret };
}

async function balances(userId: string) {
  const w = await settledWallet(pool, userId);
  const o = await pool.query<{ s: string | null }>("SELECT SUM(amount_micros)::text AS s FROM journal_entries WHERE account = $1", [
    ownerAccount(stack.ownerId),
  ]);
  return { available: w.available, reserved: w.reserved, owner: BigInt(o.rows[0]!.s ?? 0) };
}

function post(key: string, path: string, body: unknown, signal?: AbortSignal) {
  return fetch(`${stack.baseUrl}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}

/** Reads SSE events until `stopAfter` content deltas arrived (then aborts), or to the end. Returns the delta text. */
async function readDeltas(res: Response, abort: AbortController | null, stopAfter = Infinity): Promise<{ text: string; deltas: number }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let text = "";
  let deltas = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (!line.startsWith("data:")) continue;
        const json = line.slice(5).trim();
        if (json === "[DONE]") continue;
        const e = JSON.parse(json) as { type?: string; delta?: { text?: string }; choices?: { delta?: { content?: string } }[] };
        const piece = e.type === "content_block_delta" ? (e.delta?.text ?? "") : (e.choices?.[0]?.delta?.content ?? "");
        if (!piece) continue;
        text += piece;
        deltas++;
        if (deltas >= stopAfter && abort) {
          abort.abort();
          return { text, deltas };
        }
      }
    }
  } catch (error) {
    if (!abort?.signal.aborted) throw error;
  }
  return { text, deltas };
}

/** The ledger's numbers must be exactly these: user charge = official cost (standard plan), owner = official × S. */
async function expectCharge(userId: string, before: Awaited<ReturnType<typeof balances>>, s: Settled, model: string, usage: Usage, estimated: boolean) {
  const official = officialCostMicros(usage, price(model));
  expect({ input: s.inputTokens, output: s.outputTokens }).toEqual({ input: usage.inputTokens, output: usage.outputTokens });
  expect(s.charge).toBe(official);
  expect(s.earning).toBe(ownerEarningMicros(official, TIER_BPS.S));
  expect({ tier: s.tier, tierBps: s.tierBps, estimated: s.estimated }).toEqual({ tier: "S", tierBps: 9_000, estimated });
  expect(s.priceVer).toBeGreaterThanOrEqual(1);
  const after = await balances(userId);
  expect(after.reserved).toBe(0n);
  expect(before.available - after.available).toBe(official);
  expect(after.owner - before.owner).toBe(ownerEarningMicros(official, TIER_BPS.S));
}

describe("charge per end cause (docs/billing.md)", () => {
  it("completed, usage reported: exactly the reported usage", async () => {
    const { userId, key } = await user();
    const before = await balances(userId);
    const res = await post(key, "/v1/chat/completions", {
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 200,
      messages: [{ role: "user", content: "hello [mock chunks=12]" }],
    });
    const raw = await res.text();
    const { usage } = JSON.parse(/data: (\{[^\n]*"usage":\{"prompt_tokens"[^\n]*)/.exec(raw)![1]!) as {
      usage: { prompt_tokens: number; completion_tokens: number };
    };
    const s = await settledReservation(res.headers.get("x-wellspring-request-id")!);
    expect(s.endCause).toBe("completed");
    await expectCharge(
      userId,
      before,
      s,
      "gpt-4o-mini",
      { inputTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens, cachedInputTokens: 0 },
      false,
    );
  });

  it("completed without usage (no include_usage): estimated input plus the delivered output", async () => {
    const { userId, key } = await user();
    const before = await balances(userId);
    const body = {
      model: "gpt-4o-mini",
      stream: true,
      max_tokens: 200,
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "Count for me, please. [mock chunks=15]" },
      ],
    };
    const res = await post(key, "/v1/chat/completions", body);
    const got = await readDeltas(res, null);
    expect(got.deltas).toBe(15);
    const s = await settledReservation(res.headers.get("x-wellspring-request-id")!);
    expect(s.endCause).toBe("completed");
    await expectCharge(userId, before, s, "gpt-4o-mini", { inputTokens: inputEstimate(body), outputTokens: countTokens(got.text), cachedInputTokens: 0 }, true);
  });

  it("cancelled before the first token: the input only (estimated), no output", async () => {
    const { userId, key } = await user();
    const before = await balances(userId);
    const body = {
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 200,
      messages: [{ role: "user", content: "A long prompt the provider has read. [mock first_delay_ms=3000]" }],
    };
    const abort = new AbortController();
    const seen = stack.mock.requests.length;
    const pending = post(key, "/v1/chat/completions", body, abort.signal).catch(() => null);
    // The provider has the whole request (and has billed the prompt) before the client gives up.
    await stack.mock.waitForRequest((r) => stack.mock.requests.indexOf(r) >= seen, 5_000);
    await new Promise((r) => setTimeout(r, 300));
    abort.abort();
    expect(await pending).toBeNull();
    const rec = await waitForRecord(userId);
    const s = await settledReservation(rec.id);
    expect(s.endCause).toBe("client_cancelled");
    await expectCharge(userId, before, s, "gpt-4o-mini", { inputTokens: inputEstimate(body), outputTokens: 0, cachedInputTokens: 0 }, true);
  });

  it("cancelled mid-stream (OpenAI): estimated input plus exactly the output the client received", async () => {
    const { userId, key } = await user();
    const before = await balances(userId);
    const body = {
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 500,
      messages: [{ role: "user", content: "Write a lot. [mock chunks=40 delay_ms=250]" }],
    };
    const abort = new AbortController();
    const res = await post(key, "/v1/chat/completions", body, abort.signal);
    const got = await readDeltas(res, abort, 5);
    expect(got.deltas).toBe(5);
    const s = await settledReservation(res.headers.get("x-wellspring-request-id")!);
    expect(s.endCause).toBe("client_cancelled");
    await expectCharge(userId, before, s, "gpt-4o-mini", { inputTokens: inputEstimate(body), outputTokens: countTokens(got.text), cachedInputTokens: 0 }, true);
  });

  it("cancelled mid-stream (Anthropic): input as message_start reported, plus the delivered output", async () => {
    const { userId, key } = await user();
    const before = await balances(userId);
    const body = {
      model: "claude-haiku-4-5",
      stream: true,
      max_tokens: 500,
      messages: [{ role: "user", content: "Write a lot. [mock chunks=40 delay_ms=250]" }],
    };
    const abort = new AbortController();
    const res = await post(key, "/v1/messages", body, abort.signal);
    const got = await readDeltas(res, abort, 4);
    const s = await settledReservation(res.headers.get("x-wellspring-request-id")!);
    expect(s.endCause).toBe("client_cancelled");
    // The mock reports ceil(request bytes / 4) input tokens in message_start.
    const reportedInput = Math.ceil(Buffer.byteLength(JSON.stringify(body)) / 4);
    await expectCharge(userId, before, s, "claude-haiku-4-5", { inputTokens: reportedInput, outputTokens: countTokens(got.text), cachedInputTokens: 0 }, true);
  });

  it("upstream error: nothing is charged, the reservation is released, the error reaches the client", async () => {
    const { userId, key } = await user();
    const before = await balances(userId);
    const res = await post(key, "/v1/chat/completions", { model: "gpt-4o-mini", max_tokens: 100, messages: [{ role: "user", content: "[mock status=500]" }] });
    expect(res.status).toBe(500);
    await res.text();
    const s = await settledReservation(res.headers.get("x-wellspring-request-id")!);
    expect(s.endCause).toBe("upstream_error");
    await expectCharge(userId, before, s, "gpt-4o-mini", { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 }, false);
  });

  it("timeout before the response head: nothing is charged", async () => {
    const { userId, key } = await user();
    const before = await balances(userId);
    const res = await post(key, "/v1/chat/completions", {
      model: "gpt-4o-mini",
      max_tokens: 100,
      messages: [{ role: "user", content: `[mock first_delay_ms=${HEAD_TIMEOUT_MS * 3}]` }],
    });
    expect(res.status).toBe(504);
    await res.text();
    const s = await settledReservation(res.headers.get("x-wellspring-request-id")!);
    expect(s.endCause).toBe("upstream_timeout");
    await expectCharge(userId, before, s, "gpt-4o-mini", { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 }, false);
  });

  it("timeout mid-stream (stalled): estimated input plus the output delivered before the stall", async () => {
    const { userId, key } = await user();
    const before = await balances(userId);
    const body = {
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 100,
      messages: [{ role: "user", content: "Stall please. [mock chunks=10 stall_after=3]" }],
    };
    const res = await post(key, "/v1/chat/completions", body);
    const got = await readDeltas(res, null).catch(() => ({ text: "", deltas: -1 }));
    // The connection is cut (no forged ending): the client saw 3 deltas, then an error or a truncated body.
    const s = await settledReservation(res.headers.get("x-wellspring-request-id")!);
    expect(s.endCause).toBe("upstream_timeout");
    const delivered = got.deltas === 3 ? got.text : "w0 w1 w2 ";
    await expectCharge(
      userId,
      before,
      s,
      "gpt-4o-mini",
      { inputTokens: inputEstimate(body), outputTokens: countTokens(delivered), cachedInputTokens: 0 },
      true,
    );
  }, 20_000);

  it("the request record carries the same charge, earning, tier, price version and estimate flag", async () => {
    await waitFor(async () => (await pool.query("SELECT 1 FROM request_records WHERE user_charge_micros IS NOT NULL")).rowCount! >= 8);
    const mismatched = await pool.query(`
      SELECT r.id FROM request_records r JOIN reservations v ON v.request_id = r.id
      WHERE r.user_charge_micros IS DISTINCT FROM v.charge_micros OR r.owner_earning_micros IS DISTINCT FROM v.earning_micros
         OR r.tier IS DISTINCT FROM v.tier OR r.tier_bps IS DISTINCT FROM v.tier_bps OR r.price_ver IS DISTINCT FROM v.price_ver
         OR r.usage_estimated IS DISTINCT FROM v.estimated OR r.end_cause IS DISTINCT FROM v.end_cause
         OR r.input_tokens IS DISTINCT FROM v.input_tokens OR r.output_tokens IS DISTINCT FROM v.output_tokens`);
    expect(mismatched.rows).toEqual([]);
    const audit = await new Ledger(pool).audit();
    expect(audit.problems).toEqual([]);
  });
});

async function waitForRecord(userId: string): Promise<{ id: string }> {
  let row: { id: string } | undefined;
  await waitFor(async () => {
    row = (await pool.query<{ id: string }>("SELECT id FROM request_records WHERE user_id = $1", [userId])).rows[0];
    return Boolean(row);
  });
  return row!;
}
