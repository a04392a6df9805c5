// A receipt's fields for tests (everything but its place in the chain).
import type { ReceiptInput } from "../ledger.ts";

export function testReceiptInput(requestId: string, chargeMicros = 150n): ReceiptInput {
  const usage = { inputTokens: 12, outputTokens: 40, cachedInputTokens: 0, audioSeconds: 0, images: 0, characters: 0 };
  return {
    requestId,
    model: "gpt-4o-mini",
    reportedUsage: usage,
    chargedUsage: usage,
    estimated: false,
    priceVer: 1,
    tierBps: 7000,
    chargeMicros,
    earningMicros: 105n,
    agentEarningMicros: 105n,
    startedAtMs: 1_764_000_000_000,
    endedAtMs: 1_764_000_000_120,
    endCause: "completed",
  };
}
