/**
 * The official price formula, shared by the hub (which settles with it) and the agent (which checks the owner's
 * earning in every receipt with it), so the two cannot drift apart (docs/billing.md, "Money"). Integers only:
 * prices are micro-USD per million tokens (and per audio second, image, million characters); coefficients are
 * basis points. The official cost rounds up to the micro-unit, an owner's earning rounds down.
 */

/** Tokens (and characters) a price is quoted for. */
export const TOKENS_PER_PRICE_UNIT = 1_000_000n;
/** Basis points in one whole. */
export const BPS = 10_000n;

/** One model's official prices, µUSD. */
export interface ModelPriceMicros {
  inputMicrosPerMTok: bigint;
  outputMicrosPerMTok: bigint;
  cachedInputMicrosPerMTok: bigint;
  /** Units other APIs bill by (0 / absent when the model is billed by tokens only). */
  audioSecondMicros?: bigint;
  imageMicros?: bigint;
  characterMicrosPerM?: bigint;
}

/** The units a request used that the formula prices. */
export interface PricedUsage {
  inputTokens: number;
  outputTokens: number;
  /** Input tokens served from the provider's prompt cache (at most `inputTokens` count). */
  cachedInputTokens: number;
  audioSeconds?: number;
  images?: number;
  characters?: number;
}

function ceilDiv(a: bigint, b: bigint): bigint {
  return a === 0n ? 0n : (a + b - 1n) / b;
}

/**
 * The official cost of a request's usage, rounded up to the micro-unit: ⌈(uncached input × input price + cached ×
 * cached price + output × output price + characters × character price) / 10⁶⌉ + audio seconds × second price +
 * images × image price.
 */
export function officialCostMicros(usage: PricedUsage, price: ModelPriceMicros): bigint {
  const cached = BigInt(Math.min(usage.cachedInputTokens, usage.inputTokens));
  const uncached = BigInt(usage.inputTokens) - cached;
  // Tokens and characters are priced per million: summed before the one rounding.
  const scaled =
    uncached * price.inputMicrosPerMTok +
    cached * price.cachedInputMicrosPerMTok +
    BigInt(usage.outputTokens) * price.outputMicrosPerMTok +
    BigInt(usage.characters ?? 0) * (price.characterMicrosPerM ?? 0n);
  return (
    ceilDiv(scaled, TOKENS_PER_PRICE_UNIT) +
    BigInt(usage.audioSeconds ?? 0) * (price.audioSecondMicros ?? 0n) +
    BigInt(usage.images ?? 0) * (price.imageMicros ?? 0n)
  );
}

/** What an owner earns for an official cost at a tier coefficient (basis points), rounded down. */
export function ownerEarningMicros(officialMicros: bigint, tierBps: bigint): bigint {
  return (officialMicros * tierBps) / BPS;
}
