/**
 * Deferred settlements' money — background responses (`background: true`, docs/billing.md "Background responses")
 * and batches ("Batches"); the poller is `api/deferred.ts`, each kind's calls `api/deferred_kinds.ts`. A background
 * response: the provider answers the
 * create call at once (status `queued` / `in_progress`, no usage) — or a background stream ends before its usage
 * arrives — and runs the response after the call is over. The request's hold stays held past the call:
 * `defer` moves it out of the gateway's credit lease into a `held` reservation of its own and writes a
 * `deferred_settlements` row (ids, counts and money only). Every gateway polls the rows of the agents whose
 * connections it holds — claimed with `FOR UPDATE SKIP LOCKED`, no leader — retrieving `GET /v1/responses/{id}`
 * through the creating agent until a terminal status, then settles once, with the usage in that object, at the
 * prices the request started with (`wellspring_settle_deferred`). The agent signs its receipt for the original
 * request id when the statement arrives, as for any request (its record of the stream is kept 48 h).
 *
 * Rules for an end the hub cannot see (no terminal object): the response is gone at the provider (404), the agent
 * was revoked, or the row is older than `maxAgeMs` → settled at nothing (the hold released, the owner earns
 * nothing: the owner's side lost it). A user's own retrieve or cancel of the response makes the row due at once.
 */
import type { ModelPriceMicros } from "@wellspring/protocol";
import { BPS, officialCostMicros, ownerEarningMicros, planChargeMicros, scaledPrice, type PlanView, type Tier } from "./prices.ts";
import type { EndCause, Usage } from "./usage.ts";
import { usageFromObject } from "./usage_tap.ts";

export interface DeferredOptions {
  /** How often each gateway looks for due rows, ms. */
  tickMs: number;
  /** The first poll after the create call, and the backoff's start, ms. */
  firstPollMs: number;
  /** The backoff's cap (it doubles per poll that finds the response still running), ms. */
  pollMaxMs: number;
  /** A row not settled after this long (from its create call) is settled by the "expired" rule, ms. */
  maxAgeMs: number;
  /** Longest wait for the agent's answer to one poll, ms. */
  pollTimeoutMs: number;
}

export const DEFAULT_DEFERRED_OPTIONS: DeferredOptions = {
  tickMs: 1_000,
  firstPollMs: 2_000,
  pollMaxMs: 60_000,
  // Inside the agent's 48 h record of a stream and the hub's 24 h re-offer of unreceipted settlements.
  maxAgeMs: 24 * 3_600_000,
  pollTimeoutMs: 30_000,
};

/** Rows claimed per tick per gateway, most. */
export const DEFERRED_CLAIM_BATCH_MAX = 32;

/** The Responses API statuses after which a response changes no more. */
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled", "incomplete"]);

/** How a terminal status ends the request, for its record and receipt. */
export function endCauseOf(status: string): EndCause {
  if (status === "cancelled") return "client_cancelled";
  if (status === "failed") return "upstream_error";
  return "completed";
}

/** What a request was priced with when it started, kept on its row (bigints as decimal strings). */
export interface DeferredPricing {
  priceVer: number;
  planId: string;
  /** The plan's multiplier, bps; its own price for the model when it has one (null: the multiplier applies). */
  planMultiplierBps: string;
  planOwnPrice: Record<keyof ModelPriceMicros, string> | null;
  official: Record<keyof ModelPriceMicros, string>;
  tier: Tier;
  tierBps: number;
  api: string;
}

/** What a deferred settlement waits for (`deferred_settlements.kind`). */
export type DeferredKind = "response" | "openai_batch" | "anthropic_batch";

/** A hold handed over by the meter when a background response's create call ends without usage (or a batch is created). */
export interface DeferredHold {
  requestId: string;
  userId: string;
  agentId: string;
  ownerId: string | null;
  model: string;
  leaseId: string;
  reservedMicros: bigint;
  pricing: DeferredPricing;
  worst: { inputTokens: number; outputTokens: number };
  /** The share of the price table charged, basis points (absent: all of it; a batch: `BATCH_PRICE_BPS`). */
  priceBps?: bigint;
}

const PRICE_KEYS: (keyof ModelPriceMicros)[] = [
  "inputMicrosPerMTok",
  "outputMicrosPerMTok",
  "cachedInputMicrosPerMTok",
  "audioSecondMicros",
  "imageMicros",
  "characterMicrosPerM",
];

export function priceToJson(p: ModelPriceMicros): Record<keyof ModelPriceMicros, string> {
  return Object.fromEntries(PRICE_KEYS.map((k) => [k, String(p[k] ?? 0n)])) as Record<keyof ModelPriceMicros, string>;
}

function priceFromJson(p: Record<string, string>): ModelPriceMicros {
  return Object.fromEntries(PRICE_KEYS.map((k) => [k, BigInt(p[k] ?? "0")])) as unknown as ModelPriceMicros;
}

/**
 * The charge for `usage` by the pricing a request started with: the user's, the official cost, the owner's share.
 * `priceBps` scales the price table first (a batch: `BATCH_PRICE_BPS`), for the user and the owner alike.
 */
export function deferredCharge(pricing: DeferredPricing, model: string, usage: Usage, hasOwner: boolean, priceBps: bigint = BPS) {
  const official = scaledPrice(priceFromJson(pricing.official), priceBps);
  // The plan's own price, as `scaledPricing` scales it for the hold.
  const own = pricing.planOwnPrice ? scaledPrice(priceFromJson(pricing.planOwnPrice), priceBps) : null;
  const api = pricing.api as "openai";
  const plan: PlanView = {
    id: pricing.planId,
    name: "",
    kind: "",
    multiplierBps: BigInt(pricing.planMultiplierBps),
    overrides: new Map<string, ModelPriceMicros>(own ? [[`${api}:${model}`, own]] : []),
  };
  const officialMicros = officialCostMicros(usage, official);
  return {
    chargeMicros: planChargeMicros(plan, api, model, official, usage),
    officialMicros,
    earningMicros: hasOwner ? ownerEarningMicros(officialMicros, BigInt(pricing.tierBps)) : 0n,
    planBps: own ? null : Number(pricing.planMultiplierBps),
  };
}

/**
 * The usage a terminal response object reports, capped to what the hold covered: the hub forwarded none of a
 * background response's output, so it cannot count it (`usage_check.ts` has nothing to compare with); a report
 * beyond the request's own worst case is charged up to it, marked estimated.
 */
export function cappedUsage(response: Record<string, unknown>, worst: { inputTokens: number; outputTokens: number }): { usage: Usage; capped: boolean } {
  const raw = typeof response.usage === "object" && response.usage !== null ? usageFromObject(response.usage as Record<string, unknown>) : null;
  return capUsage(raw ?? { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 }, worst);
}

/** A reported usage capped to the worst case held, figure by figure; `capped` when any figure was cut. */
export function capUsage(reported: Usage, worst: { inputTokens: number; outputTokens: number }): { usage: Usage; capped: boolean } {
  const inputTokens = Math.min(reported.inputTokens, worst.inputTokens);
  const outputTokens = Math.min(reported.outputTokens, worst.outputTokens);
  const usage: Usage = { inputTokens, outputTokens, cachedInputTokens: Math.min(reported.cachedInputTokens, inputTokens) };
  return { usage, capped: inputTokens < reported.inputTokens || outputTokens < reported.outputTokens };
}
