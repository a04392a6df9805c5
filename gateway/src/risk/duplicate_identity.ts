/**
 * Detector: two agents run with one identity (a copied data folder, a second machine with the same key).
 * The hub refuses the second connection (close DUPLICATE_IDENTITY) and raises one open flag per agent,
 * whose evidence gathers the refusals: the live session, the refused sessions and every address seen.
 * The owner's agent page shows a warning from the same flag.
 */
import { appendDistinct, evidenceStrings as strings, raiseRiskFlag, type RaisedFlag, type RiskDb, type RiskEvidence } from "./flags.ts";

export const DUPLICATE_AGENT_IDENTITY = "duplicate_agent_identity";
/** Refused session ids a flag keeps, the most recent. */
export const DUPLICATE_EVIDENCE_SESSIONS_MAX = 10;
/** Distinct addresses a flag keeps, the first seen. */
export const DUPLICATE_EVIDENCE_ADDRESSES_MAX = 16;
/** How long the owner's agent page shows the warning after the last refused copy, ms. */
export const DUPLICATE_WARNING_WINDOW_MS = 24 * 60 * 60 * 1000;

export interface DuplicateEvidence extends RiskEvidence {
  agentId: string;
  /** The session that holds the identity and keeps serving. */
  live: { sessionId: string; gatewayId: string | null; address: string | null };
  /** The latest connection refused. */
  lastRefused: { sessionId: string; gatewayId: string; address: string; at: string };
  firstRefusedAt: string;
  /** The most recent refused sessions, oldest first. */
  refusedSessions: string[];
  /** Every address seen with this identity while the flag was open: the live session's and the refused ones'. */
  addresses: string[];
}

export interface DuplicateAttempt {
  agentId: string;
  live: DuplicateEvidence["live"];
  refused: { sessionId: string; gatewayId: string; address: string; at: Date };
}

const addAddresses = (into: string[], ...more: (string | null)[]): string[] => appendDistinct(into, more, DUPLICATE_EVIDENCE_ADDRESSES_MAX);

export function mergeDuplicateEvidence(previous: RiskEvidence, next: RiskEvidence): RiskEvidence {
  const n = next as DuplicateEvidence;
  const sessions = [...strings(previous.refusedSessions), ...n.refusedSessions].slice(-DUPLICATE_EVIDENCE_SESSIONS_MAX);
  return {
    ...n,
    firstRefusedAt: typeof previous.firstRefusedAt === "string" ? previous.firstRefusedAt : n.firstRefusedAt,
    refusedSessions: sessions,
    addresses: addAddresses(strings(previous.addresses), ...n.addresses),
  } satisfies DuplicateEvidence;
}

/** Records a refused duplicate connection: opens the agent's flag or adds to the open one. */
export function raiseDuplicateIdentity(db: RiskDb, attempt: DuplicateAttempt): Promise<RaisedFlag> {
  const at = attempt.refused.at.toISOString();
  const evidence: DuplicateEvidence = {
    agentId: attempt.agentId,
    live: attempt.live,
    lastRefused: { ...attempt.refused, at },
    firstRefusedAt: at,
    refusedSessions: [attempt.refused.sessionId],
    addresses: addAddresses([], attempt.live.address, attempt.refused.address),
  };
  return raiseRiskFlag(db, { kind: DUPLICATE_AGENT_IDENTITY, subject: `agent:${attempt.agentId}`, severity: 2, evidence, merge: mergeDuplicateEvidence });
}

export interface DuplicateWarning {
  /** When another copy last tried to connect (UTC). */
  at: Date;
  /** The address it came from. */
  address: string;
  /** Connections refused while the flag was open. */
  attempts: number;
}

/** The owner-facing warning a duplicate-identity flag carries; null when the flag is not one or is too old. */
export function duplicateWarningOf(
  flag: { kind: string; evidence: unknown; lastRaisedAt: Date; raisedCount: number },
  now = Date.now(),
): DuplicateWarning | null {
  if (flag.kind !== DUPLICATE_AGENT_IDENTITY || now - flag.lastRaisedAt.getTime() > DUPLICATE_WARNING_WINDOW_MS) return null;
  const last = (flag.evidence as Partial<DuplicateEvidence> | null)?.lastRefused;
  return { at: flag.lastRaisedAt, address: typeof last?.address === "string" ? last.address : "an unknown address", attempts: flag.raisedCount };
}
