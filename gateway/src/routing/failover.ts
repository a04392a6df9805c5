/**
 * Failover before the first byte: which failures of an attempt let the request path try the next candidate,
 * and the bounds on trying.
 *
 * A request is tried again on another agent only when nothing of the response reached the user, the whole
 * request body is held (so it can be sent again byte for byte: bodies up to `FailoverLimits.bodyBytesMax`),
 * fewer than `attemptsMax` attempts were made and `windowMs` has not passed since the first dispatch. One
 * attempt at a time: the failed stream is closed (RESET CANCEL when it is still open) before the next opens, so
 * a request never has two upstream calls at once.
 */
import { ResetCode } from "@wellspring/protocol";

export interface FailoverLimits {
  /** Attempts per request at most, the first included (default 3). */
  attemptsMax: number;
  /** No new attempt starts later than this after the first dispatch, ms (default 15 s). */
  windowMs: number;
  /**
   * Largest request body held whole for a replay, bytes (default 1 MiB). A larger body is streamed to one agent
   * as it arrives and is not tried again elsewhere.
   */
  bodyBytesMax: number;
}

export const DEFAULT_FAILOVER_LIMITS: FailoverLimits = { attemptsMax: 3, windowMs: 15_000, bodyBytesMax: 1024 * 1024 };

/**
 * A provider status that is the serving agent's fault, not the user's: rate limited (429), the owner's key
 * refused (401, 403: the user's credentials never go upstream, so these are about the owner's key), or a
 * provider error (5xx). Another agent may serve the same request. Every other 4xx (bad request, unknown model,
 * context length) is the request's own and would fail anywhere.
 */
export function agentFaultStatus(status: number): boolean {
  return status === 429 || status === 401 || status === 403 || status >= 500;
}

/**
 * A RESET before the response head that another agent may not meet: the agent refused (its own limits, paused,
 * busy, draining), could not reach its provider, lost its provider's connection before an answer, or found its
 * provider host outside the provider's networks, or
 * its connection was lost (here, or at the gateway a request was forwarded to, or that gateway no longer holds
 * it). Not retried: a timeout (the
 * provider may be working on it), a body or path the agent refuses (it would be refused anywhere), a cancel.
 */
export function retryableReset(code: number, cause: "agent" | "connection"): boolean {
  if (cause === "connection") return true;
  return (
    code === ResetCode.REFUSED ||
    code === ResetCode.RATE_LIMITED ||
    code === ResetCode.STREAM_LIMIT ||
    code === ResetCode.SHUTTING_DOWN ||
    code === ResetCode.UPSTREAM_UNREACHABLE ||
    // Before a head: the provider's connection broke after the request was written. The provider may have the call,
    // but this owner is not paid for it either way, and a user's SDK would retry it anyway (perhaps on the same
    // key): another agent serves it once, billed once. (The agent itself never re-sends it on its own key.)
    code === ResetCode.UPSTREAM_RESET ||
    code === ResetCode.AGENT_NOT_HERE ||
    code === ResetCode.AGENT_LOST ||
    // This agent's provider host resolves outside the provider's networks; another agent's may not.
    code === ResetCode.ENDPOINT_FORBIDDEN
  );
}

/** The wait an agent's RATE_LIMITED refusal names (its reason ends `retry in <ms> ms`), bounded to [1 ms, 60 s]; 1 s when absent. */
export const RATE_LIMITED_RETRY_MS_DEFAULT = 1_000;
export const RATE_LIMITED_RETRY_MS_MAX = 60_000;

export function rateLimitedRetryMs(reason: string): number {
  const m = /retry in (\d{1,9}) ms$/.exec(reason);
  if (!m) return RATE_LIMITED_RETRY_MS_DEFAULT;
  return Math.min(RATE_LIMITED_RETRY_MS_MAX, Math.max(1, Number(m[1])));
}
