/**
 * Price versions, plans, money in and out, through the real gateway and a real Deno agent:
 * - a published version reaches the connected agent within 1 s (PRICE_TABLE → PRICE_ACK), and a request
 *   already running settles at the version it started with;
 * - plans change what users pay, never what owners earn; `/v1/models` shows each caller their own prices;
 * - the legacy billing endpoints chat front-ends read add up to the balance;
 * - redemption codes are single use under concurrent redemption; payouts are requested, paid once, audited.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import OpenAI from "openai";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE, newId } from "@wellspring/db";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { Ledger, ownerAccount } from "../../gateway/src/billing/ledger.ts";
import { officialCostMicros, ownerEarningMicros, TIER_BPS, userChargeMicros } from "../../gateway/src/billing/prices.ts";
import { Treasury } from "../../gateway/src/ops/treasury.ts";
import { adminFetch, fund, settledWallet, startStack, type Stack } from "./harness.ts";

let stack: Stack;
let pool: pg.Pool;
beforeAll(async () => {
  stack = await startStack({ gatewayEnv: { BILLING_ENABLED: "1" } });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
}, 120_000);
afterAll(async () => {
  await pool?.end();
  await stack?.close();
});

const admin = (path: string, init?: { method?: string; body?: unknown }) => adminFetch(stack.gateway.adminOrigin, path, init);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function agentPriceVer(): Promise<number | null> {
  const res = await admin("/admin/v1/agents");
  const body = (await res.json()) as { data: { id: string; price_ver: number | null; connected: boolean }[] };
  return body.data.find((a) => a.id === stack.agent.agentId)?.price_ver ?? null;
}

const tableJson = (overrides: Record<string, { input: number; output: number }> = {}) =>
  DEFAULT_PRICE_TABLE.map((p) => ({
    provider: p.provider,
    model: p.model,
    input_micros_per_mtok: String(overrides[p.model]?.input ?? p.inputMicrosPerMTok),
    output_micros_per_mtok: String(overrides[p.model]?.output ?? p.outputMicrosPerMTok),
    cached_input_micros_per_mtok: String(p.cachedInputMicrosPerMTok),
  }));

async function user(micros: bigint) {
  const userId = newId("usr");
  await stack.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  if (micros > 0n) await fund(stack.database.url, userId, micros);
  const key = await issueKey(stack.db, userId, "money");
  return { userId, key: key.secret };
}

async function settled(requestId: string): Promise<{ charge: bigint; earning: bigint; priceVer: number; input: number; output: number }> {
  for (let i = 0; i < 200; i++) {
    const r = await pool.query("SELECT * FROM reservations WHERE request_id = $1 AND status = 'settled'", [requestId]);
    const row = r.rows[0] as Record<string, string | number> | undefined;
    if (row)
      return {
        charge: BigInt(row.charge_micros!),
        earning: BigInt(row.earning_micros!),
        priceVer: Number(row.price_ver),
        input: Number(row.input_tokens),
        output: Number(row.output_tokens),
      };
    await sleep(25);
  }
  throw new Error(`request ${requestId} never settled`);
}

describe("price versions", () => {
  it("the agent holds the current version from its connection on", async () => {
    const current = (await (await admin("/admin/v1/prices")).json()) as { ver: number; prices: unknown[] };
    expect(current.ver).toBe(1);
    expect(current.prices).toHaveLength(DEFAULT_PRICE_TABLE.length);
    for (let i = 0; i < 100 && (await agentPriceVer()) !== 1; i++) await sleep(50);
    expect(await agentPriceVer()).toBe(1);
  });

  it("a published version reaches the connected agent within 1 s, and is kept in its data directory", async () => {
    const startedAt = Date.now();
    const res = await admin("/admin/v1/prices", { body: { note: "v2: same prices", prices: tableJson() } });
    expect(res.status).toBe(201);
    const { ver } = (await res.json()) as { ver: number };
    expect(ver).toBe(2);
    while ((await agentPriceVer()) !== 2 && Date.now() - startedAt < 5_000) await sleep(10);
    const elapsed = Date.now() - startedAt;
    expect(await agentPriceVer()).toBe(2);
    expect(elapsed).toBeLessThan(1_000);
    const kept = JSON.parse(await readFile(join(stack.agent.dataDir, "state", "prices.json"), "utf8")) as {
      ver: number;
      prices: { model: string; outputMicrosPerMTok: string }[];
    };
    expect(kept.ver).toBe(2);
    expect(kept.prices.find((p) => p.model === "gpt-4o-mini")?.outputMicrosPerMTok).toBe("600000");
  });

  it("a bad price table is refused with a clear error and publishes nothing", async () => {
    const res = await admin("/admin/v1/prices", {
      body: { prices: [{ provider: "openai", model: "gpt-4o-mini", input_micros_per_mtok: -1, output_micros_per_mtok: 1 }] },
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/input_micros_per_mtok/);
    const unauthorised = await fetch(`${stack.gateway.adminOrigin}/admin/v1/prices`, { headers: { authorization: "Bearer wrong-token" } });
    expect(unauthorised.status).toBe(401);
    expect(((await (await admin("/admin/v1/prices")).json()) as { ver: number }).ver).toBe(2);
  });

  it("a request running when a version is published settles at the version it started with", async () => {
    const { key } = await user(5_000_000n);
    const body = {
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 100,
      messages: [{ role: "user", content: "[mock chunks=12 delay_ms=100]" }],
    };
    const running = await fetch(`${stack.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const reader = running.body!.getReader();
    await reader.read(); // the stream has started
    const published = (await (
      await admin("/admin/v1/prices", { body: { note: "v3: gpt-4o-mini ×10", prices: tableJson({ "gpt-4o-mini": { input: 1_500_000, output: 6_000_000 } }) } })
    ).json()) as { ver: number };
    expect(published.ver).toBe(3);
    while (!(await reader.read()).done) {
      /* drain */
    }
    const old = await settled(running.headers.get("x-wellspring-request-id")!);
    expect(old.priceVer).toBe(2);
    const v2 = DEFAULT_PRICE_TABLE.find((p) => p.model === "gpt-4o-mini")!;
    expect(old.charge).toBe(officialCostMicros({ inputTokens: old.input, outputTokens: old.output, cachedInputTokens: 0 }, v2));

    // A request that starts now is priced with version 3 (the gateway heard the publication at once).
    const fresh = await fetch(`${stack.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ ...body, messages: [{ role: "user", content: "[mock chunks=12]" }] }),
    });
    await fresh.text();
    const now = await settled(fresh.headers.get("x-wellspring-request-id")!);
    expect(now.priceVer).toBe(3);
    expect(now.charge).toBe(
      officialCostMicros(
        { inputTokens: now.input, outputTokens: now.output, cachedInputTokens: 0 },
        { ...v2, inputMicrosPerMTok: 1_500_000n, outputMicrosPerMTok: 6_000_000n },
      ),
    );
  });
});

describe("plans and what callers read", () => {
  it("a promotional plan lowers what the user pays, not what the owner earns; /v1/models shows the caller's prices", async () => {
    const created = await admin("/admin/v1/plans", {
      body: {
        name: "Launch promo",
        kind: "promotional",
        multiplier_bps: 8_000,
        overrides: [{ provider: "anthropic", model: "claude-haiku-4-5", input_micros_per_mtok: 500_000, output_micros_per_mtok: 2_500_000 }],
      },
    });
    expect(created.status).toBe(201);
    const plan = (await created.json()) as { id: string };
    const { userId, key } = await user(5_000_000n);
    expect((await admin(`/admin/v1/users/${userId}/plan`, { method: "PUT", body: { plan_id: plan.id } })).status).toBe(200);

    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: key });
    const models = (await client.models.list()).data as unknown as {
      id: string;
      pricing?: { prompt: string; completion: string };
      wellspring_pricing?: { price_ver: number; plan: string };
    }[];
    const mini = models.find((m) => m.id === "gpt-4o-mini")!;
    // Version 3: gpt-4o-mini at $1.50 / $6.00 per 1M tokens, × 0.8 = $1.20 / $4.80 = 0.0000012 / 0.0000048 USD per token.
    expect(mini.pricing).toMatchObject({ prompt: "0.0000012", completion: "0.0000048" });
    expect(mini.wellspring_pricing).toMatchObject({ price_ver: 3, plan: "Launch promo" });
    const anthropicModels = (await (
      await fetch(`${stack.baseUrl}/v1/models`, { headers: { "x-api-key": key, "anthropic-version": "2023-06-01" } })
    ).json()) as { data: { id: string; pricing?: { prompt: string } }[] };
    expect(anthropicModels.data.find((m) => m.id === "claude-haiku-4-5")?.pricing?.prompt).toBe("0.0000005");

    const ownerBefore = await ownerBalance();
    const res = await client.chat.completions
      .create({ model: "gpt-4o-mini", max_tokens: 50, messages: [{ role: "user", content: "[mock chunks=9]" }] })
      .withResponse();
    const s = await settled(res.response.headers.get("x-wellspring-request-id")!);
    const official = officialCostMicros(
      { inputTokens: res.data.usage!.prompt_tokens, outputTokens: 9, cachedInputTokens: 0 },
      { inputMicrosPerMTok: 1_500_000n, outputMicrosPerMTok: 6_000_000n, cachedInputMicrosPerMTok: 75_000n },
    );
    expect(s.charge).toBe(userChargeMicros(official, 8_000n));
    expect(s.earning).toBe(ownerEarningMicros(official, TIER_BPS.A));
    expect((await ownerBalance()) - ownerBefore).toBe(ownerEarningMicros(official, TIER_BPS.A));
  });

  it("the legacy billing endpoints add up to the balance (hard_limit_usd − total_usage / 100)", async () => {
    const { userId, key } = await user(2_500_000n);
    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: key });
    const done = await client.chat.completions
      .create({ model: "gpt-4o-mini", max_tokens: 50, messages: [{ role: "user", content: "[mock chunks=30]" }] })
      .withResponse();
    const s = await settled(done.response.headers.get("x-wellspring-request-id")!);
    await settledWallet(pool, userId); // the gateway's lease went back
    const sub = (await (await fetch(`${stack.baseUrl}/v1/dashboard/billing/subscription`, { headers: { authorization: `Bearer ${key}` } })).json()) as {
      hard_limit_usd: number;
      wellspring: { available_micros: string };
    };
    const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
    const usage = (await (
      await fetch(`${stack.baseUrl}/v1/dashboard/billing/usage?start_date=${day(-7)}&end_date=${day(2)}`, { headers: { authorization: `Bearer ${key}` } })
    ).json()) as { total_usage: number; daily_costs: { line_items: { name: string; cost: number }[] }[]; wellspring: { spent_micros: string } };
    expect(BigInt(usage.wellspring.spent_micros)).toBe(s.charge);
    expect(BigInt(sub.wellspring.available_micros)).toBe(2_500_000n - s.charge);
    expect(sub.hard_limit_usd).toBeCloseTo(2.5, 6);
    expect(sub.hard_limit_usd - usage.total_usage / 100).toBeCloseTo(Number(2_500_000n - s.charge) / 1e6, 6);
    expect(usage.daily_costs.flatMap((d) => d.line_items).map((l) => l.name)).toEqual(["gpt-4o-mini"]);
    const bad = await fetch(`${stack.baseUrl}/v1/dashboard/billing/usage?start_date=yesterday`, { headers: { authorization: `Bearer ${key}` } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
    void userId;
  });
});

async function ownerBalance(): Promise<bigint> {
  const r = await pool.query<{ s: string | null }>("SELECT SUM(amount_micros)::text AS s FROM journal_entries WHERE account = $1", [
    ownerAccount(stack.ownerId),
  ]);
  return BigInt(r.rows[0]!.s ?? 0);
}

describe("money in and out", () => {
  it("a redemption code credits once, however many redeem it at the same moment", async () => {
    const batch = await admin("/admin/v1/redemption-batches", { body: { amount_micros: 5_000_000, count: 3, note: "launch" } });
    expect(batch.status).toBe(201);
    const { codes } = (await batch.json()) as { codes: string[] };
    expect(codes).toHaveLength(3);
    expect(new Set(codes).size).toBe(3);
    const { userId, key } = await user(0n);
    const { key: otherKey } = await user(0n);
    const attempts = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        fetch(`${stack.baseUrl}/v1/billing/redeem`, {
          method: "POST",
          headers: { authorization: `Bearer ${i % 2 ? key : otherKey}`, "content-type": "application/json" },
          body: JSON.stringify({ code: codes[0] }),
        }).then((r) => r.status),
      ),
    );
    expect(attempts.filter((s) => s === 200)).toHaveLength(1);
    expect(attempts.filter((s) => s === 409)).toHaveLength(19);
    const credited = await pool.query<{ s: string }>(
      "SELECT COALESCE(SUM(amount_micros), 0)::text AS s FROM journal_entries WHERE kind = 'redemption' AND account LIKE 'user:%'",
    );
    expect(BigInt(credited.rows[0]!.s)).toBe(5_000_000n);
    const unknown = await fetch(`${stack.baseUrl}/v1/billing/redeem`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ code: "WSR-AAAA-BBBB-CCCC-DDDD" }),
    });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { param: string } }).error.param).toBe("code");
    // The second code works for a user with no wallet yet and makes one.
    const second = await fetch(`${stack.baseUrl}/v1/billing/redeem`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ code: codes[1]!.toLowerCase() }),
    });
    expect(second.status).toBe(200);
    void userId;
  });

  it("an admin grant is credited once per grant id and audited", async () => {
    const { userId } = await user(0n);
    const grant = { amount_micros: "1234567", reason: "goodwill after outage", grant_id: `g-${userId}` };
    expect((await admin(`/admin/v1/users/${userId}/grants`, { body: grant })).status).toBe(201);
    expect(((await (await admin(`/admin/v1/users/${userId}/grants`, { body: grant })).json()) as { result: string }).result).toBe("duplicate");
    const w = await pool.query<{ available_micros: string }>("SELECT available_micros FROM wallets WHERE user_id = $1", [userId]);
    expect(w.rows[0]!.available_micros).toBe("1234567");
    const trail = await pool.query("SELECT actor, detail FROM audit_events WHERE action = 'credit.grant' AND subject = $1", [`user:${userId}`]);
    expect(trail.rows).toHaveLength(1);
    expect(trail.rows[0]).toMatchObject({ actor: "admin-api", detail: { reason: "goodwill after outage", amountMicros: "1234567" } });
    expect((await admin("/admin/v1/users/usr_nobody/grants", { body: grant })).status).toBe(404);
  });

  it("an owner's earnings accrue per UTC day; a payout is requested, paid once, and the ledger stays whole", async () => {
    const treasury = new Treasury(pool);
    const days = await treasury.ownerEarningsByDay(stack.ownerId);
    const today = new Date().toISOString().slice(0, 10);
    expect(days[0]?.day).toBe(today);
    const balance = await treasury.ownerBalance(stack.ownerId);
    expect(balance).toBeGreaterThan(0n);
    expect(days.reduce((n, d) => n + d.earningMicros, 0n)).toBe(balance);
    expect(await treasury.requestPayout(stack.ownerId, balance + 1n)).toMatchObject({ outcome: "insufficient_earnings", availableMicros: balance });
    // Two requests for the whole balance at once: one is set aside, the other finds nothing left.
    const both = await Promise.all([treasury.requestPayout(stack.ownerId, balance), treasury.requestPayout(stack.ownerId, balance)]);
    const made = both.filter((r) => r.outcome === "requested");
    expect(made).toHaveLength(1);
    const payoutId = (made[0] as { payoutId: string }).payoutId;
    expect(await treasury.ownerBalance(stack.ownerId)).toBe(0n);
    expect((await admin(`/admin/v1/payouts/${payoutId}`, { body: { decision: "paid" } })).status).toBe(400);
    expect((await admin(`/admin/v1/payouts/${payoutId}`, { body: { decision: "paid", reference: "SEPA-2026-11-29-001" } })).status).toBe(200);
    expect((await admin(`/admin/v1/payouts/${payoutId}`, { body: { decision: "cancelled" } })).status).toBe(409);
    const actions = (await pool.query<{ action: string }>("SELECT action FROM audit_events WHERE subject = $1 ORDER BY id", [`payout:${payoutId}`])).rows.map(
      (r) => r.action,
    );
    expect(actions).toEqual(["payout.requested", "payout.paid"]);
    await expect(pool.query("DELETE FROM audit_events")).rejects.toThrow(/append-only/);
    const audit = await admin("/admin/v1/ledger/audit");
    expect(audit.status).toBe(200);
    expect(await audit.json()).toMatchObject({ ok: true, problems: [] });
    expect((await new Ledger(pool).audit()).journalSumMicros).toBe(0n);
  });
});
