/**
 * The SETTLEMENT statement the hub sends the agent that served a request, once its settlement is durable: what
 * the request was charged and what the owner earned, from which the agent signs its receipt (docs/protocol.md,
 * "Receipts").
 */
import type { SettlementStatement } from "@wellspring/protocol";
import type { Charge } from "./meter.ts";
import type { EndCause, Usage } from "./usage.ts";

function wireUsage(u: Usage) {
  return {
    inputTokens: u.inputTokens,
    outputTokens: u.outputTokens,
    cachedInputTokens: u.cachedInputTokens,
    audioSeconds: u.audioSeconds ?? 0,
    images: u.images ?? 0,
    characters: u.characters ?? 0,
  };
}

/**
 * The statement for a settled, billed request; null when it moved no money (nothing charged, nothing earned: a
 * request refused or lost before the provider had it), which needs no receipt.
 */
export function settlementStatement(requestId: string, model: string, cause: EndCause, charge: Charge): SettlementStatement | null {
  if (charge.chargeMicros === null || charge.earningMicros === null || !charge.usage || charge.priceVer === null || charge.tierBps === null) return null;
  if (charge.chargeMicros === 0n && charge.earningMicros === 0n) return null;
  return {
    requestId,
    model,
    reportedUsage: charge.reported ? wireUsage(charge.reported) : null,
    chargedUsage: wireUsage(charge.usage),
    estimated: charge.estimated,
    priceVer: charge.priceVer,
    tierBps: charge.tierBps,
    chargeMicros: charge.chargeMicros.toString(),
    earningMicros: charge.earningMicros.toString(),
    endCause: cause,
    // Only statements offered again after a reconnect carry it (ledger/receipts.ts `unreceipted`).
    dispatchedAtMs: undefined,
  };
}
