/**
 * Reserve-then-settle billing through the real gateway, agent and mock provider: the exact charge and owner
 * earning for a completed request, refusal before any upstream call when the balance is too low, and no
 * overspending under 64 concurrent streams on a balance that covers about 10.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE, newId, publishPriceVersion } from "@wellspring/db";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { Ledger, ownerAccount } from "../../gateway/src/billing/ledger.ts";
import { officialCostMicros, ownerEarningMicros, TIER_BPS } from "../../gateway/src/billing/prices.ts";
import { settledWallet, startStack, type Stack } from "./harness.ts";

let stack: Stack;
let pool: pg.Pool;
let ledger: Ledger;
beforeAll(async () => {
  stack = await startStack({
    gatewayEnv: { BILLING_ENABLED: "1" },
    beforeAgent: async (db) => void (await publishPriceVersion(db, DEFAULT_PRICE_TABLE, "test seed")),
  });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
  ledger = new Ledger(pool);
}, 120_000);
afterAll(async () => {
  await pool?.end();
  await stack?.close();
});

const price = (model: string) => DEFAULT_PRICE_TABLE.find((p) => p.model === model)!;

async function wallet(userId: string): Promise<{ available: bigint; reserved: bigint }> {
  return settledWallet(pool, userId);
}

async function settled(userId: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await wallet(userId)).reserved === 0n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("reservations never settled");
}

async function fundedUser(micros: bigint) {
  const userId = newId("usr");
  await stack.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  if (micros > 0n) await ledger.credit(userId, micros, "grant", `grant:${userId}`);
  const key = await issueKey(stack.db, userId, "billing");
  return { userId, key: key.secret };
}

function post(key: string, path: string, body: unknown) {
  return fetch(`${stack.baseUrl}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

describe("billing", () => {
  it("a request holds money through a credit lease that /metrics counts, and the lease goes back when the user is idle", async () => {
    const { userId, key } = await fundedUser(5_000_000n);
    const leasesOpen = async () =>
      Number(/^wellspring_credit_leases_open (\d+)$/m.exec(await (await fetch(`${stack.gateway.adminOrigin}/metrics`)).text())?.[1]);
    const res = await post(key, "/v1/chat/completions", {
      model: "gpt-4o-mini",
      stream: true,
      messages: [{ role: "user", content: "[mock chunks=20 delay_ms=20]" }],
    });
    expect(res.status).toBe(200);
    // While the stream runs, the user's lease is open and part of the balance is held.
    expect(await leasesOpen()).toBeGreaterThanOrEqual(1);
    const held = await pool.query<{ n: number; amount: string }>(
      "SELECT count(*)::int AS n, COALESCE(SUM(amount_micros), 0)::text AS amount FROM credit_leases WHERE user_id = $1 AND NOT released",
      [userId],
    );
    expect(held.rows[0]!.n).toBe(1);
    expect(BigInt(held.rows[0]!.amount)).toBeGreaterThan(0n);
    await res.text();
    const w = await settled(userId).then(() => wallet(userId));
    expect(w.reserved).toBe(0n);
    expect(await leasesOpen()).toBe(0);
    const after = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM credit_leases WHERE user_id = $1 AND NOT released", [userId]);
    expect(after.rows[0]!.n).toBe(0);
  });

  it("a completed request costs exactly its reported usage at the official price; the owner earns price × tier A", async () => {
    const { userId, key } = await fundedUser(1_000_000n);
    const ownerBefore = await pool.query<{ s: string | null }>("SELECT SUM(amount_micros)::text AS s FROM journal_entries WHERE account = $1", [
      ownerAccount(stack.ownerId),
    ]);
    const res = await post(key, "/v1/chat/completions", { model: "gpt-4o-mini", max_tokens: 100, messages: [{ role: "user", content: "[mock chunks=7]" }] });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    await settled(userId);
    const official = officialCostMicros(
      { inputTokens: body.usage.prompt_tokens, outputTokens: body.usage.completion_tokens, cachedInputTokens: 0 },
      price("gpt-4o-mini"),
    );
    expect(official).toBeGreaterThan(0n);
    expect((await wallet(userId)).available).toBe(1_000_000n - official);
    const ownerAfter = await pool.query<{ s: string | null }>("SELECT SUM(amount_micros)::text AS s FROM journal_entries WHERE account = $1", [
      ownerAccount(stack.ownerId),
    ]);
    expect(BigInt(ownerAfter.rows[0]!.s ?? 0) - BigInt(ownerBefore.rows[0]!.s ?? 0)).toBe(ownerEarningMicros(official, TIER_BPS.A));
    expect((await ledger.audit()).problems).toEqual([]);
  });

  it("a streamed Anthropic message is charged from message_start and message_delta usage", async () => {
    const { userId, key } = await fundedUser(1_000_000n);
    const res = await post(key, "/v1/messages", {
      model: "claude-haiku-4-5",
      max_tokens: 64,
      stream: true,
      messages: [{ role: "user", content: "[mock chunks=9]" }],
    });
    const text = await res.text();
    const input = Number(/"input_tokens":(\d+)/.exec(text)![1]);
    await settled(userId);
    const official = officialCostMicros({ inputTokens: input, outputTokens: 9, cachedInputTokens: 0 }, price("claude-haiku-4-5"));
    expect((await wallet(userId)).available).toBe(1_000_000n - official);
  });

  it("a balance too low is refused before any upstream call, in each provider's error shape", async () => {
    const { userId, key } = await fundedUser(0n);
    const before = stack.mock.requests.length;
    const openai = await post(key, "/v1/chat/completions", { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
    expect(openai.status).toBe(429);
    expect(((await openai.json()) as { error: { type: string } }).error.type).toBe("insufficient_quota");
    const anthropic = await post(key, "/v1/messages", { model: "claude-haiku-4-5", max_tokens: 10, messages: [{ role: "user", content: "hi" }] });
    expect((await anthropic.json()) as { type: string; error: { type: string } }).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    expect(stack.mock.requests.length).toBe(before);
    expect(await wallet(userId)).toEqual({ available: 0n, reserved: 0n });
  });

  it("64 concurrent streams on a balance that covers about 10 never overspend", async () => {
    const body = {
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 1000,
      messages: [{ role: "user", content: "[mock chunks=20 delay_ms=20]" }],
    };
    // The reservation: every input byte a token, plus the output cap.
    const perRequest = officialCostMicros(
      { inputTokens: Buffer.byteLength(JSON.stringify(body)), outputTokens: 1000, cachedInputTokens: 0 },
      price("gpt-4o-mini"),
    );
    const funding = perRequest * 10n + perRequest / 2n;
    const { userId, key } = await fundedUser(funding);
    const results = await Promise.all(
      Array.from({ length: 64 }, async () => {
        const res = await post(key, "/v1/chat/completions", body);
        await res.text();
        return res.status;
      }),
    );
    const ok = results.filter((s) => s === 200).length;
    expect(ok).toBeGreaterThanOrEqual(10); // at least what the balance covers at the reservation…
    expect(results.filter((s) => s !== 200).every((s) => s === 429)).toBe(true);
    await settled(userId);
    const w = await wallet(userId);
    expect(w.available >= 0n).toBe(true); // …and never more than the balance
    const spent = funding - w.available;
    const official = officialCostMicros(
      { inputTokens: Math.ceil(Buffer.byteLength(JSON.stringify(body)) / 4), outputTokens: 20, cachedInputTokens: 0 },
      price("gpt-4o-mini"),
    );
    expect(spent).toBeLessThanOrEqual(funding);
    expect(spent).toBe(official * BigInt(ok));
    expect((await ledger.audit()).problems).toEqual([]);
  }, 60_000);

  it("speech, images and transcriptions are charged by their own units: characters, images, audio seconds", async () => {
    const { userId, key } = await fundedUser(1_000_000n);
    const ownerBefore = await ownerTotal();
    const input = "Héllo, wörld — this sentence is read aloud. 😀";
    const speech = await post(key, "/v1/audio/speech", { model: "tts-1", voice: "alloy", input });
    expect(speech.status).toBe(200);
    expect((await speech.arrayBuffer()).byteLength).toBe(4096);
    const image = await post(key, "/v1/images/generations", { model: "dall-e-3", prompt: "a lighthouse", n: 1, size: "1024x1024" });
    expect(((await image.json()) as { data: unknown[] }).data).toHaveLength(1);
    const form = new FormData();
    form.append("file", new File([new Uint8Array(3000)], "a.mp3", { type: "audio/mpeg" }));
    form.append("model", "whisper-1");
    const transcript = await fetch(`${stack.baseUrl}/v1/audio/transcriptions`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: form });
    expect(((await transcript.json()) as { usage: { seconds: number } }).usage.seconds).toBe(1);
    await settled(userId);
    // tts-1: $15 per 1M characters (code points); dall-e-3: $0.04 per image; whisper-1: $0.006 per minute = 100 µUSD/s.
    const speechCost = (BigInt([...input].length) * price("tts-1").characterMicrosPerM + 999_999n) / 1_000_000n;
    const expected = [speechCost, price("dall-e-3").imageMicros, price("whisper-1").audioSecondMicros];
    expect(expected).toEqual([675n, 40_000n, 100n]); // 45 characters × 15 µUSD
    const charges = await pool.query<{ model: string; charge_micros: string; earning_micros: string; estimated: boolean }>(
      "SELECT model, charge_micros, earning_micros, estimated FROM reservations WHERE user_id = $1 ORDER BY created_at",
      [userId],
    );
    expect(charges.rows.map((r) => [r.model, BigInt(r.charge_micros), r.estimated])).toEqual([
      ["tts-1", expected[0], false],
      ["dall-e-3", expected[1], false],
      ["whisper-1", expected[2], false],
    ]);
    const total = expected.reduce((a, b) => a + b, 0n);
    expect((await wallet(userId)).available).toBe(1_000_000n - total);
    expect((await ownerTotal()) - ownerBefore).toBe(expected.reduce((a, b) => a + ownerEarningMicros(b, TIER_BPS.A), 0n));
  });
});

async function ownerTotal(): Promise<bigint> {
  const r = await pool.query<{ s: string | null }>("SELECT SUM(amount_micros)::text AS s FROM journal_entries WHERE account = $1", [
    ownerAccount(stack.ownerId),
  ]);
  return BigInt(r.rows[0]!.s ?? 0);
}
