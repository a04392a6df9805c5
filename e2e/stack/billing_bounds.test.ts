/**
 * The money holes a hostile or careless client could use, closed — through the real gateway, a real Deno agent
 * and the mock provider:
 * - usage the provider reports beyond what the request held (`n`, a provider sending more than the cap) is
 *   charged in full and paid to the owner in full, and the audit recomputes every charge from its usage (usage
 *   reported beyond what the hub delivered is capped: usage_divergence.test.ts);
 * - a chunked body (no Content-Length) holds what it sends, not the 32 MiB ceiling, and a body that outgrows the
 *   balance is refused before the provider has it whole;
 * - the hub reads the body the provider reads: a repeated `model` (or `stream`) anywhere — after any padding —
 *   is refused before it reaches the provider, in the route's own error shape;
 * - routes the provider does not charge for (`count_tokens`) charge nothing and are rate-limited.
 */
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE, newId } from "@wellspring/db";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { Ledger } from "../../gateway/src/billing/ledger.ts";
import { officialCostMicros, ownerEarningMicros } from "../../gateway/src/billing/prices.ts";
import { FREE_ROUTE_REQUESTS_PER_WINDOW } from "../../gateway/src/api/free_routes.ts";
import { DEMO_MODELS, fund, settledWallet, startStack, type Stack } from "./harness.ts";

let stack: Stack;
let pool: pg.Pool;
beforeAll(async () => {
  // gpt-4.1-mini too: a 1M-token context window, so a large body's hold is bounded by its bytes, not the window.
  stack = await startStack({ gatewayEnv: { BILLING_ENABLED: "1" }, models: { ...DEMO_MODELS, openai: [...DEMO_MODELS.openai, "gpt-4.1-mini"] } });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
}, 120_000);
afterAll(async () => {
  await pool?.end();
  await stack?.close();
});

const price = (model: string) => DEFAULT_PRICE_TABLE.find((p) => p.model === model)!;
/** The tier every test agent is enrolled at (A, 7,000 bps). */
const TIER_A_BPS = 7_000n;

async function user(micros: bigint) {
  const userId = newId("usr");
  await stack.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  if (micros > 0n) await fund(stack.database.url, userId, micros);
  const key = await issueKey(stack.db, userId, "bounds");
  return { userId, key: key.secret };
}

async function settled(requestId: string) {
  for (let i = 0; i < 400; i++) {
    const r = await pool.query("SELECT * FROM reservations WHERE request_id = $1 AND status = 'settled'", [requestId]);
    const row = r.rows[0] as Record<string, string | number | null> | undefined;
    if (row) {
      return {
        reserved: BigInt(row.amount_micros as string),
        charge: BigInt(row.charge_micros as string),
        earning: BigInt(row.earning_micros as string),
        input: Number(row.input_tokens),
        output: Number(row.output_tokens),
        overdraft: BigInt(row.overdraft_micros as string),
      };
    }
    await sleep(25);
  }
  throw new Error(`request ${requestId} never settled`);
}

const post = (key: string, path: string, body: string | ReadableStream<Uint8Array>, headers: Record<string, string> = {}) =>
  fetch(`${stack.baseUrl}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body,
    // @ts-expect-error: Node's fetch needs `duplex` for a streamed body.
    duplex: "half",
  });

/** What the provider saw of requests started after `before` (the mock records every request it receives). */
const providerSawSince = (before: number) => stack.mock.requests.slice(before);

async function auditProblems(): Promise<string[]> {
  return (await new Ledger(pool).audit()).problems;
}

describe("usage beyond the reservation", () => {
  it("a chat with n=4 is charged for all four answers, and the owner paid for all four", async () => {
    const { key } = await user(5_000_000n);
    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: key, maxRetries: 0 });
    // Each answer uses its whole cap (50 tokens, 200 bytes the hub counts as 50): 200 output tokens, four times what one answer could use.
    const res = await client.chat.completions
      .create({ model: "gpt-4o-mini", n: 4, max_tokens: 50, messages: [{ role: "user", content: "[mock chunks=7 bytes=200 output_tokens=50] four answers" }] })
      .withResponse();
    expect(res.data.choices).toHaveLength(4);
    expect(res.data.usage!.completion_tokens).toBe(200);
    const s = await settled(res.response.headers.get("x-wellspring-request-id")!);
    expect(s.output).toBe(200);
    const official = officialCostMicros({ inputTokens: s.input, outputTokens: 200, cachedInputTokens: 0 }, price("gpt-4o-mini"));
    expect(s.charge).toBe(official);
    expect(s.earning).toBe(ownerEarningMicros(official, TIER_A_BPS));
    // n × max_tokens was held, so nothing went beyond the hold.
    expect(s.reserved).toBeGreaterThanOrEqual(s.charge);
    expect(s.overdraft).toBe(0n);
  });

  it("max_tokens=1 with a provider delivering and reporting 20,000 output tokens is charged all 20,000; the owner is paid for them; a flag records it", async () => {
    const { userId, key } = await user(5_000_000n);
    const res = await post(
      key,
      "/v1/chat/completions",
      JSON.stringify({ model: "gpt-4o", max_tokens: 1, messages: [{ role: "user", content: "[mock chunks=1 bytes=80000 output_tokens=20000] think hard" }] }),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { usage: { completion_tokens: number } };
    expect(body.usage.completion_tokens).toBe(20_000);
    const s = await settled(res.headers.get("x-wellspring-request-id")!);
    const official = officialCostMicros({ inputTokens: s.input, outputTokens: 20_000, cachedInputTokens: 0 }, price("gpt-4o"));
    expect(official).toBeGreaterThan(200_000n); // 20,000 × $10 per 1M
    expect(s.charge).toBe(official);
    expect(s.earning).toBe(ownerEarningMicros(official, TIER_A_BPS));
    expect(s.reserved).toBeLessThan(s.charge);
    const w = await settledWallet(pool, userId);
    expect(w.available).toBe(5_000_000n - official);
    const flag = await pool.query<{ evidence: { requestId: string; beyondMicros: string } }>(
      "SELECT evidence FROM risk_flags WHERE kind = 'usage_over_reservation' AND subject = $1",
      [`user:${userId}`],
    );
    expect(flag.rows).toHaveLength(1);
    expect(flag.rows[0]!.evidence.requestId).toBe(res.headers.get("x-wellspring-request-id"));
    expect(BigInt(flag.rows[0]!.evidence.beyondMicros)).toBe(official - s.reserved);
    expect(await auditProblems()).toEqual([]);
  });

  it("a Responses call without an output cap holds the model's whole output maximum, so its reported usage stays within the hold", async () => {
    const { key } = await user(5_000_000n);
    const res = await post(key, "/v1/responses", JSON.stringify({ model: "gpt-4o-mini", input: "[mock chunks=2 bytes=64000 output_tokens=16000] go" }));
    expect(res.status).toBe(200);
    const s = await settled(res.headers.get("x-wellspring-request-id")!);
    expect(s.output).toBe(16_000);
    expect(s.reserved).toBeGreaterThanOrEqual(s.charge);
    expect(s.overdraft).toBe(0n);
  });

  it("a wallet the overage took below zero refuses the next request before any upstream call", async () => {
    const { userId, key } = await user(100_000n); // $0.10
    const first = await post(
      key,
      "/v1/chat/completions",
      JSON.stringify({ model: "gpt-4o", max_tokens: 1, messages: [{ role: "user", content: "[mock chunks=1 bytes=80000 output_tokens=20000] x" }] }),
    );
    expect(first.status).toBe(200);
    await first.text();
    const w = await settledWallet(pool, userId);
    expect(w.available).toBeLessThan(0n);
    const before = stack.mock.requests.length;
    const second = await post(
      key,
      "/v1/chat/completions",
      JSON.stringify({ model: "gpt-4o-mini", max_tokens: 1, messages: [{ role: "user", content: "hi" }] }),
    );
    expect(second.status).toBe(429);
    expect(((await second.json()) as { error: { code: string } }).error.code).toBe("insufficient_quota");
    expect(stack.mock.requests.length).toBe(before);
    expect((await pool.query("SELECT 1 FROM risk_flags WHERE kind = 'balance_overdrawn' AND subject = $1", [`user:${userId}`])).rowCount).toBe(1);
    expect(await auditProblems()).toEqual([]);
  });
});

describe("chunked bodies", () => {
  const chunked = (text: string, pieces = 3, delayMs = 0) => {
    const bytes = new TextEncoder().encode(text);
    let i = 0;
    const step = Math.ceil(bytes.length / pieces);
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (i >= bytes.length) return controller.close();
        if (delayMs) await sleep(delayMs);
        controller.enqueue(bytes.subarray(i, i + step));
        i += step;
      },
    });
  };

  it("a small call without Content-Length holds what it sent, not the body ceiling: it runs on a 1-cent balance", async () => {
    const { userId, key } = await user(10_000n); // $0.01: a 32 MiB hold of gpt-4o would be ~$84
    const body = JSON.stringify({ model: "gpt-4o", max_tokens: 16, messages: [{ role: "user", content: "[mock chunks=2] hi" }] });
    const res = await post(key, "/v1/chat/completions", chunked(body));
    expect(res.status).toBe(200);
    const s = await settled(res.headers.get("x-wellspring-request-id")!);
    // The hold: the body's bytes as input, 16 output tokens, at gpt-4o's price.
    expect(s.reserved).toBe(officialCostMicros({ inputTokens: Buffer.byteLength(body), outputTokens: 16, cachedInputTokens: 0 }, price("gpt-4o")));
    await settledWallet(pool, userId);
  });

  it("a chunked body larger than the balance is refused before the provider has any of it", async () => {
    // $0.15 covers the first 256 KiB of gpt-4.1-mini input ($0.40 per 1M), not the whole ~600 KB.
    const { userId, key } = await user(150_000n);
    const big = JSON.stringify({
      model: "gpt-4.1-mini",
      max_tokens: 16,
      messages: [{ role: "user", content: `[mock chunks=1] ${"lorem ipsum ".repeat(50_000)}` }],
    });
    const before = stack.mock.requests.length;
    const res = await post(key, "/v1/chat/completions", chunked(big, 60, 2));
    expect(res.status).toBe(429);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("insufficient_quota");
    await sleep(300);
    // A chunked body up to the failover bound (1 MiB) is read whole before dispatch so it can be replayed on
    // another agent (routing/failover.ts): its hold covers all of it, and the provider never saw any of it.
    expect(providerSawSince(before)).toHaveLength(0);
    await settledWallet(pool, userId);
    expect(await auditProblems()).toEqual([]);
  });
});

describe("one reading of the body", () => {
  it("a model repeated after 300 KiB of padding is refused with a 400 and never reaches the provider whole (OpenAI shape)", async () => {
    const { key } = await user(5_000_000n);
    const body = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]${" ".repeat(300 * 1024)},"model":"gpt-4o"}`;
    const before = stack.mock.requests.length;
    const res = await post(key, "/v1/chat/completions", body);
    expect(res.status).toBe(400);
    const err = (await res.json()) as { error: { type: string; message: string } };
    expect(err.error.type).toBe("invalid_request_error");
    expect(err.error.message).toMatch(/repeats the field `model`/);
    await sleep(300);
    // Dispatched with the first 256 KiB (the model was known), then cut before the repeat was forwarded.
    for (const seen of providerSawSince(before)) {
      expect(seen.status).toBe(0);
      expect(seen.requestBytes).toBeLessThan(Buffer.byteLength(body));
    }
  });

  it("the same on /v1/messages, in Anthropic's error shape, for a repeated stream", async () => {
    const { key } = await user(5_000_000n);
    const body = `{"model":"claude-haiku-4-5","max_tokens":10,"stream":false,"messages":[{"role":"user","content":"hi"}]${"\n".repeat(280 * 1024)},"stream":true}`;
    const res = await post(key, "/v1/messages", body, { "anthropic-version": "2023-06-01" });
    expect(res.status).toBe(400);
    const err = (await res.json()) as { type: string; error: { type: string; message: string } };
    expect(err.type).toBe("error");
    expect(err.error.type).toBe("invalid_request_error");
    expect(err.error.message).toMatch(/repeats the field `stream`/);
  });

  it("malformed JSON is called malformed, not a missing model", async () => {
    const { key } = await user(5_000_000n);
    const res = await post(key, "/v1/chat/completions", '{"model": "gpt-4o-mini", "messages": [}');
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/not valid JSON/);
  });

  it("a server-side tool the provider bills per call is refused before dispatch", async () => {
    const { key } = await user(5_000_000n);
    const res = await post(key, "/v1/responses", JSON.stringify({ model: "gpt-4o-mini", input: "news?", tools: [{ type: "web_search_preview" }] }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string; message: string } }).error).toMatchObject({
      param: "tools",
      message: expect.stringMatching(/web_search_preview/),
    });
  });
});

describe("free routes", () => {
  it("count_tokens on 100 KB of text charges nothing, and is rate-limited per key", async () => {
    const { userId, key } = await user(1_000_000n);
    const client = new Anthropic({ baseURL: stack.baseUrl, apiKey: key, maxRetries: 0 });
    const counted = await client.messages.countTokens({ model: "claude-haiku-4-5", messages: [{ role: "user", content: "word ".repeat(20_000) }] });
    expect(counted.input_tokens).toBeGreaterThan(10_000);
    await sleep(300);
    const w = await settledWallet(pool, userId);
    expect(w).toEqual({ available: 1_000_000n, reserved: 0n });
    const records = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM reservations WHERE user_id = $1", [userId]);
    expect(records.rows[0]!.n).toBe(0);
    let limited: Response | null = null;
    for (let i = 1; i <= FREE_ROUTE_REQUESTS_PER_WINDOW + 1 && !limited; i++) {
      const r = await post(key, "/v1/messages/count_tokens", JSON.stringify({ model: "claude-haiku-4-5", messages: [{ role: "user", content: "hi" }] }), {
        "anthropic-version": "2023-06-01",
      });
      if (r.status === 429) limited = r;
      else await r.text();
    }
    expect(limited).not.toBeNull();
    expect(Number(limited!.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await limited!.json()) as { error: { type: string } }).error.type).toBe("rate_limit_error");
  });
});
