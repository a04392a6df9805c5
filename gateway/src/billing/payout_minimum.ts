/**
 * What an owner may ask to be paid: whole cents (a bank transfer or card payout moves nothing finer), at least
 * `PAYOUT_MICROS_MIN`. Checked by every place a payout is requested (portal, CLI) before `Treasury.requestPayout`.
 */
import { formatUsd } from "./money.ts";

/** The smallest payout, micro-USD ($0.01). */
export const PAYOUT_MICROS_MIN = 10_000n;
/** Payouts are whole multiples of this, micro-USD (one cent). */
export const PAYOUT_MICROS_STEP = 10_000n;

/** Why `amountMicros` cannot be a payout, or null when it can. */
export function payoutAmountProblem(amountMicros: bigint): string | null {
  if (amountMicros < PAYOUT_MICROS_MIN) return `The smallest payout is ${formatUsd(PAYOUT_MICROS_MIN)}.`;
  if (amountMicros % PAYOUT_MICROS_STEP !== 0n) return "Payouts are in whole cents, e.g. 12.50.";
  return null;
}
