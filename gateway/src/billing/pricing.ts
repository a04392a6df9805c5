/**
 * Prices and money arithmetic, in integers only. Prices are micro-units per million tokens; coefficients are
 * basis points (1/10,000). Rounding: what a user is charged rounds up to the micro-unit, what an owner earns
 * rounds down, and the platform margin takes the difference — so every settlement balances exactly.
 */
import type { Usage } from "./usage.ts";

export interface ModelPriceMicros {
  inputMicrosPerMTok: bigint;
  outputMicrosPerMTok: bigint;
  cachedInputMicrosPerMTok: bigint;
  /** Units other APIs bill by (0 / absent when the model is billed by tokens only). */
  audioSecondMicros?: bigint;
  imageMicros?: bigint;
  characterMicrosPerM?: bigint;
}

export const TOKENS_PER_PRICE_UNIT = 1_000_000n;
export const BPS = 10_000n;

/** The mission's settlement tiers: the share of the official price an owner earns, basis points (the database seeds these; an admin sets the discount lane's). */
export const TIER_BPS = { S: 9_000n, A: 7_000n, discount: 5_000n } as const;

function ceilDiv(a: bigint, b: bigint): bigint {
  return a === 0n ? 0n : (a + b - 1n) / b;
}

/** The official cost of a request's usage (tokens and any other billed units), rounded up to the micro-unit. */
export function officialCostMicros(usage: Usage, price: ModelPriceMicros): bigint {
  const cached = BigInt(Math.min(usage.cachedInputTokens, usage.inputTokens));
  const uncached = BigInt(usage.inputTokens) - cached;
  // Tokens and characters are priced per million: summed before the one rounding.
  const scaled = uncached * price.inputMicrosPerMTok + cached * price.cachedInputMicrosPerMTok + BigInt(usage.outputTokens) * price.outputMicrosPerMTok
    + BigInt(usage.characters ?? 0) * (price.characterMicrosPerM ?? 0n);
  return ceilDiv(scaled, TOKENS_PER_PRICE_UNIT) + BigInt(usage.audioSeconds ?? 0) * (price.audioSecondMicros ?? 0n) + BigInt(usage.images ?? 0) * (price.imageMicros ?? 0n);
}

/** What a user on a plan pays for an official cost (plan multiplier in basis points), rounded up. */
export function userChargeMicros(officialMicros: bigint, planBps: bigint): bigint {
  return ceilDiv(officialMicros * planBps, BPS);
}

/** What an owner earns for an official cost at a tier coefficient (basis points), rounded down. */
export function ownerEarningMicros(officialMicros: bigint, tierBps: bigint): bigint {
  return (officialMicros * tierBps) / BPS;
}

/** Display only (never for arithmetic): the one money formatter, format/money.ts. */
export { formatUsd as formatMicros } from "../format/money.ts";
