/**
 * Detector: an agent reported more usage than the hub counted passing through it (`billing/usage_check.ts`
 * capped the charge). One open flag per agent gathers the capped requests (counts and ids, never content); the
 * owner's earning on each capped request is held (`earning_holds.ts`) until an admin reviews the flag.
 */
import type { Db } from "@wellspring/db/core";
import type { CappedUsage } from "../billing/meter.ts";
import { holdEarning } from "./earning_holds.ts";
import { raiseRiskFlag, type RiskEvidence, type RiskSubject } from "./flags.ts";

export const USAGE_DIVERGENCE = "usage_divergence";
/** Capped request ids a flag keeps, the most recent. */
export const USAGE_DIVERGENCE_REQUESTS_MAX = 20;
/** Reported ÷ allowed at or above which the flag is high severity (not a tokenizer's difference: made up). */
const FABRICATED_RATIO = 10;

export interface UsageDivergenceEvidence extends RiskEvidence {
  agentId: string | null;
  ownerId: string | null;
  /** Requests capped while the flag was open, and the most recent of them. */
  cappedRequests: number;
  requestIds: string[];
  /** The owner's earnings held by this flag, µ$ (decimal string). */
  heldMicros: string;
  /** The latest capped request: its model, the counts reported, counted, allowed and charged. */
  latest: { requestId: string; userId: string; model: string; at: string } & CappedUsage["divergence"];
}

function mergeEvidence(previous: RiskEvidence, next: RiskEvidence): RiskEvidence {
  const p = previous as Partial<UsageDivergenceEvidence>;
  const n = next as UsageDivergenceEvidence;
  const ids = [...(Array.isArray(p.requestIds) ? p.requestIds : []), ...n.requestIds].slice(-USAGE_DIVERGENCE_REQUESTS_MAX);
  const held = BigInt(typeof p.heldMicros === "string" ? p.heldMicros : "0") + BigInt(n.heldMicros);
  return { ...n, cappedRequests: (typeof p.cappedRequests === "number" ? p.cappedRequests : 0) + 1, requestIds: ids, heldMicros: held.toString() };
}

function severity(capped: CappedUsage): 2 | 3 {
  const { reported, allowed } = capped.divergence;
  const over = (r: number, a: number | null) => a !== null && r >= Math.max(1, a) * FABRICATED_RATIO;
  return over(reported.inputTokens, allowed.inputTokens) || over(reported.outputTokens, allowed.outputTokens) ? 3 : 2;
}

/**
 * Raises (or updates) the agent's flag and holds the owner's earning on the request, once the settlement is
 * written. A settlement that was never written holds nothing (there is no earning) but still raises the flag.
 */
export async function recordUsageDivergence(db: Db, capped: CappedUsage, written: Promise<unknown>): Promise<void> {
  const settled = await written.then(
    () => true,
    () => false,
  );
  const subject: RiskSubject = capped.agentId ? `agent:${capped.agentId}` : `user:${capped.userId}`;
  const held = settled && capped.ownerId !== null ? capped.earningMicros : 0n;
  const evidence: UsageDivergenceEvidence = {
    agentId: capped.agentId,
    ownerId: capped.ownerId,
    cappedRequests: 1,
    requestIds: [capped.requestId],
    heldMicros: held.toString(),
    latest: { requestId: capped.requestId, userId: capped.userId, model: capped.model, at: new Date().toISOString(), ...capped.divergence },
  };
  await db.$transaction(async (tx) => {
    const flag = await raiseRiskFlag(tx, { kind: USAGE_DIVERGENCE, subject, severity: severity(capped), evidence, merge: mergeEvidence });
    if (held > 0n && capped.ownerId !== null) {
      await holdEarning(tx, {
        ownerId: capped.ownerId,
        agentId: capped.agentId,
        requestId: capped.requestId,
        flagId: flag.id,
        reason: USAGE_DIVERGENCE,
        amountMicros: held,
      });
    }
  });
}
