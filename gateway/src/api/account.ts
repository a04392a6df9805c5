/**
 * What API clients read about their own account with their virtual key: the models with their prices for
 * the caller's plan (`GET /v1/models`, a `pricing` field like OpenRouter's), the OpenAI-legacy billing
 * endpoints chat front-ends query (`/v1/dashboard/billing/subscription` and `/usage`, as one-api serves
 * them), and redeeming a code (`POST /v1/billing/redeem`).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type pg from "pg";
import type { ApiFamily } from "@wellspring/protocol";
import { GatewayError } from "../errors.ts";
import type { Principal } from "./keys.ts";
import type { PriceBook } from "../billing/prices.ts";
import { planPrice, type Tariffs } from "../billing/prices.ts";
import type { ModelPriceMicros } from "../billing/prices.ts";
import type { Treasury } from "../ops/treasury.ts";
import { walletBalance } from "../billing/ledger.ts";

/** Largest body accepted by the account endpoints, bytes. */
const ACCOUNT_BODY_BYTES_MAX = 4 * 1024;

export interface AccountDeps {
  pool: pg.Pool;
  prices: PriceBook;
  tariffs: Tariffs;
  treasury: Treasury;
  /** Models served now by connected agents, per API family. */
  liveModels(api: ApiFamily): string[];
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

/** Exact decimal text of `micros / 10^scale` (no floating point). */
export function decimalOf(micros: bigint, scale: number): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  const digits = abs.toString().padStart(scale + 1, "0");
  const whole = digits.slice(0, digits.length - scale);
  const frac = digits.slice(digits.length - scale).replace(/0+$/, "");
  return `${neg ? "-" : ""}${whole}${frac ? "." + frac : ""}`;
}

/** USD per token, as text, from micro-USD per million tokens (10^-12 USD per token per unit). */
const perToken = (microsPerMTok: bigint) => decimalOf(microsPerMTok, 12);

function pricingFields(p: ModelPriceMicros) {
  return {
    prompt: perToken(p.inputMicrosPerMTok),
    completion: perToken(p.outputMicrosPerMTok),
    input_cache_read: perToken(p.cachedInputMicrosPerMTok),
    ...(p.imageMicros ? { image: decimalOf(p.imageMicros, 6) } : {}),
    ...(p.audioSecondMicros ? { audio_second: decimalOf(p.audioSecondMicros, 6) } : {}),
    ...(p.characterMicrosPerM ? { character: decimalOf(p.characterMicrosPerM, 12) } : {}),
  };
}

export async function handleModels(req: IncomingMessage, res: ServerResponse, principal: Principal, deps: AccountDeps): Promise<void> {
  const anthropic = typeof req.headers["anthropic-version"] === "string";
  const api: ApiFamily = anthropic ? "anthropic" : "openai";
  const models = deps.liveModels(api);
  const plan = await deps.tariffs.plan(principal.planId);
  const priced = await Promise.all(
    models.map(async (id) => {
      const official = await deps.prices.get(api, id);
      if (!official) return { id, pricing: null };
      const mine = planPrice(plan, api, id, official.price);
      return {
        id,
        pricing: pricingFields(mine),
        wellspring_pricing: {
          price_ver: official.ver,
          plan: plan.name,
          input_micros_per_mtok: mine.inputMicrosPerMTok.toString(),
          output_micros_per_mtok: mine.outputMicrosPerMTok.toString(),
          cached_input_micros_per_mtok: mine.cachedInputMicrosPerMTok.toString(),
          audio_second_micros: (mine.audioSecondMicros ?? 0n).toString(),
          image_micros: (mine.imageMicros ?? 0n).toString(),
          character_micros_per_m: (mine.characterMicrosPerM ?? 0n).toString(),
        },
      };
    }),
  );
  const body = anthropic
    ? {
        data: priced.map((m) => ({
          type: "model",
          id: m.id,
          display_name: m.id,
          created_at: "2025-01-01T00:00:00Z",
          ...(m.pricing ? { pricing: m.pricing, wellspring_pricing: m.wellspring_pricing } : {}),
        })),
        has_more: false,
        first_id: models[0] ?? null,
        last_id: models.at(-1) ?? null,
      }
    : {
        object: "list",
        data: priced.map((m) => ({
          id: m.id,
          object: "model",
          created: 0,
          owned_by: "wellspring",
          ...(m.pricing ? { pricing: m.pricing, wellspring_pricing: m.wellspring_pricing } : {}),
        })),
      };
  sendJson(res, 200, body);
}

/** Dollars as a JSON number, for the legacy endpoints' display fields only (exact integers sit beside them). */
const usdNumber = (micros: bigint) => Number(decimalOf(micros, 6));

/**
 * one-api's semantics, which chat front-ends rely on: `hard_limit_usd` = balance + everything spent, and
 * `/usage`'s `total_usage` = everything spent in cents, so `hard_limit_usd − total_usage / 100` = balance.
 */
export async function handleBillingSubscription(res: ServerResponse, principal: Principal, deps: AccountDeps): Promise<void> {
  const w = await walletBalance(deps.pool, principal.userId);
  const total = w.available + w.reserved + w.spent;
  sendJson(res, 200, {
    object: "billing_subscription",
    has_payment_method: true,
    soft_limit_usd: usdNumber(total),
    hard_limit_usd: usdNumber(total),
    system_hard_limit_usd: usdNumber(total),
    access_until: 0,
    wellspring: { available_micros: w.available.toString(), reserved_micros: w.reserved.toString(), spent_micros: w.spent.toString() },
  });
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;
/** Longest range `/usage` lists daily costs for, days. */
const USAGE_RANGE_DAYS_MAX = 366;

export async function handleBillingUsage(url: URL, res: ServerResponse, principal: Principal, deps: AccountDeps): Promise<void> {
  const w = await walletBalance(deps.pool, principal.userId);
  const end = url.searchParams.get("end_date") ?? new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  const start = url.searchParams.get("start_date") ?? new Date(Date.now() - 29 * 86_400_000).toISOString().slice(0, 10);
  if (!DATE.test(start) || !DATE.test(end) || Number.isNaN(Date.parse(`${start}T00:00:00Z`)) || Number.isNaN(Date.parse(`${end}T00:00:00Z`))) {
    throw new GatewayError("invalid_request", "start_date and end_date must be dates as YYYY-MM-DD (UTC).");
  }
  const days = (Date.parse(`${end}T00:00:00Z`) - Date.parse(`${start}T00:00:00Z`)) / 86_400_000;
  if (days <= 0 || days > USAGE_RANGE_DAYS_MAX)
    throw new GatewayError("invalid_request", `end_date must be after start_date, at most ${USAGE_RANGE_DAYS_MAX} days later.`);
  const daily = await deps.pool.query<{ day: string; model: string | null; cost: string }>(
    `SELECT to_char(date_trunc('day', settled_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day, model, SUM(charge_micros)::text AS cost
     FROM reservations
     WHERE user_id = $1 AND status = 'settled' AND charge_micros > 0
       AND settled_at >= $2::date AT TIME ZONE 'UTC' AND settled_at < $3::date AT TIME ZONE 'UTC'
     GROUP BY 1, 2 ORDER BY 1, 2`,
    [principal.userId, start, end],
  );
  const byDay = new Map<string, { name: string; cost: number }[]>();
  for (const row of daily.rows) {
    const items = byDay.get(row.day) ?? [];
    items.push({ name: row.model ?? "unknown", cost: usdNumber(BigInt(row.cost)) * 100 });
    byDay.set(row.day, items);
  }
  sendJson(res, 200, {
    object: "list",
    total_usage: usdNumber(w.spent) * 100,
    daily_costs: [...byDay].map(([day, line_items]) => ({ timestamp: Date.parse(`${day}T00:00:00Z`) / 1000, line_items })),
    wellspring: { spent_micros: w.spent.toString(), start_date: start, end_date: end },
  });
}

/** Reads a small JSON object body, refusing more than `bytesMax` bytes; `{}` for an empty body when allowed. */
export async function readJsonObject(req: IncomingMessage, bytesMax: number, { emptyIsObject = false } = {}): Promise<Record<string, unknown>> {
  let size = 0;
  const parts: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > bytesMax) throw new GatewayError("body_too_large", `Request body exceeds the limit of ${bytesMax} bytes.`);
    parts.push(chunk);
  }
  const text = Buffer.concat(parts).toString("utf8");
  try {
    const v: unknown = JSON.parse(text === "" && emptyIsObject ? "{}" : text);
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* answered below */
  }
  throw new GatewayError("invalid_request", "The body must be a JSON object.");
}

export async function handleRedeem(req: IncomingMessage, res: ServerResponse, principal: Principal, deps: AccountDeps): Promise<void> {
  const body = await readJsonObject(req, ACCOUNT_BODY_BYTES_MAX);
  if (typeof body.code !== "string") throw new GatewayError("invalid_request", 'Send the code as {"code": "WSR-…"}.', { param: "code" });
  const result = await deps.treasury.redeem(principal.userId, body.code);
  if (result.outcome !== "redeemed") {
    if (result.outcome === "invalid") throw new GatewayError("not_found", "This redemption code does not exist.", { param: "code" });
    throw new GatewayError("conflict", result.outcome === "expired" ? "This redemption code has expired." : "This redemption code was already redeemed.", {
      param: "code",
    });
  }
  const w = await walletBalance(deps.pool, principal.userId);
  sendJson(res, 200, { object: "redemption", amount_micros: result.amountMicros.toString(), available_micros: w.available.toString() });
}
