/**
 * Detector: an agent's provider host resolved outside that provider's published networks (a hosts-file line, a
 * local DNS server or a transparent proxy sending the official name to a relay). The agent refuses the call
 * itself (RESET ENDPOINT_FORBIDDEN) and reports what it resolved (CONTROL ENDPOINT_REPORT); the hub raises one
 * open flag per agent whose evidence gathers the hosts and addresses, and the owner's agent page shows it.
 */
import type { EndpointReport } from "@wellspring/protocol";
import { appendDistinct as union, evidenceStrings as strings, raiseRiskFlag, type RaisedFlag, type RiskDb, type RiskEvidence } from "./flags.ts";

export const ENDPOINT_FORBIDDEN = "endpoint_forbidden";
/** Distinct addresses outside the networks a flag keeps, the first seen. */
export const ENDPOINT_EVIDENCE_ADDRESSES_MAX = 32;
/** Distinct hosts a flag keeps. */
export const ENDPOINT_EVIDENCE_HOSTS_MAX = 8;
/** How long the owner's agent page shows the warning after the last report, ms. */
export const ENDPOINT_WARNING_WINDOW_MS = 24 * 60 * 60 * 1000;

/**
 * ENDPOINT_REPORTs the hub takes from one agent per window, at most: a stock agent sends one per host per 10
 * minutes (agent-deno ENDPOINT_REPORT_INTERVAL_MS); a modified one could send one per frame, and each taken report
 * is a log line and a flag write. Enough for every provider host an agent serves to be reported in one window.
 */
export const ENDPOINT_REPORTS_PER_AGENT_MAX = 4;
/** The window those reports are counted in, ms. */
export const ENDPOINT_REPORT_WINDOW_MS = 60_000;
/** Agents whose window is tracked at once, at most; past it, windows already over are forgotten first. */
export const ENDPOINT_REPORT_AGENTS_TRACKED_MAX = 10_000;

/** What the throttle says of one report: take it, or drop it (`firstDropped`: the first dropped in this window, to log once). */
export type EndpointReportAdmission = { take: true } | { take: false; firstDropped: boolean };

/**
 * Per agent, at most ENDPOINT_REPORTS_PER_AGENT_MAX reports per ENDPOINT_REPORT_WINDOW_MS (a fixed window from the
 * agent's first report in it). One per gateway process, shared by all its agent connections, so reconnecting does
 * not reset an agent's count.
 */
export class EndpointReportThrottle {
  readonly #windows = new Map<string, { startMs: number; count: number }>();

  constructor(
    readonly now: () => number = Date.now,
    readonly limits = {
      perAgentMax: ENDPOINT_REPORTS_PER_AGENT_MAX,
      windowMs: ENDPOINT_REPORT_WINDOW_MS,
      agentsTrackedMax: ENDPOINT_REPORT_AGENTS_TRACKED_MAX,
    },
  ) {}

  admit(agentId: string): EndpointReportAdmission {
    const t = this.now();
    let w = this.#windows.get(agentId);
    if (!w || t - w.startMs >= this.limits.windowMs) {
      if (!w && this.#windows.size >= this.limits.agentsTrackedMax) this.#forgetOver(t);
      w = { startMs: t, count: 0 };
      this.#windows.set(agentId, w);
    }
    w.count++;
    if (w.count <= this.limits.perAgentMax) return { take: true };
    return { take: false, firstDropped: w.count === this.limits.perAgentMax + 1 };
  }

  /** Agents tracked now (for tests). */
  get tracked(): number {
    return this.#windows.size;
  }

  #forgetOver(t: number): void {
    for (const [id, w] of this.#windows) if (t - w.startMs >= this.limits.windowMs) this.#windows.delete(id);
    // Every window still open: forget the oldest (an agent forgotten may report again early, never more than its own max).
    if (this.#windows.size >= this.limits.agentsTrackedMax) {
      const oldest = this.#windows.keys().next().value;
      if (oldest !== undefined) this.#windows.delete(oldest);
    }
  }
}

export interface EndpointEvidence extends RiskEvidence {
  agentId: string;
  /** The hosts that resolved outside (`provider host`), first seen first. */
  hosts: string[];
  /** The addresses outside the provider's networks, first seen first. */
  outside: string[];
  /** The latest report. */
  last: { requestId: string; provider: string; host: string; addresses: string[]; sessionId: string; tunnelAddress: string; at: string };
}

export function mergeEndpointEvidence(previous: RiskEvidence, next: RiskEvidence): RiskEvidence {
  const n = next as EndpointEvidence;
  return {
    ...n,
    hosts: union(strings(previous.hosts), n.hosts, ENDPOINT_EVIDENCE_HOSTS_MAX),
    outside: union(strings(previous.outside), n.outside, ENDPOINT_EVIDENCE_ADDRESSES_MAX),
  } satisfies EndpointEvidence;
}

/** Records an agent's report: opens the agent's flag or adds to the open one. */
export function raiseEndpointForbidden(
  db: RiskDb,
  agentId: string,
  report: EndpointReport,
  seen: { sessionId: string; tunnelAddress: string; at: Date },
): Promise<RaisedFlag> {
  const evidence: EndpointEvidence = {
    agentId,
    hosts: [`${report.provider} ${report.host}`],
    outside: report.outside.slice(0, ENDPOINT_EVIDENCE_ADDRESSES_MAX),
    last: { ...report, ...seen, at: seen.at.toISOString() },
  };
  return raiseRiskFlag(db, { kind: ENDPOINT_FORBIDDEN, subject: `agent:${agentId}`, severity: 3, evidence, merge: mergeEndpointEvidence });
}

export interface EndpointWarning {
  /** When the agent last reported (UTC). */
  at: Date;
  host: string;
  /** The addresses outside the provider's networks, as the agent resolved them. */
  outside: string[];
  reports: number;
}

/** The owner-facing warning an endpoint flag carries; null when the flag is not one or is too old. */
export function endpointWarningOf(
  flag: { kind: string; evidence: unknown; lastRaisedAt: Date; raisedCount: number },
  now = Date.now(),
): EndpointWarning | null {
  if (flag.kind !== ENDPOINT_FORBIDDEN || now - flag.lastRaisedAt.getTime() > ENDPOINT_WARNING_WINDOW_MS) return null;
  const e = flag.evidence as Partial<EndpointEvidence> | null;
  return {
    at: flag.lastRaisedAt,
    host: typeof e?.last?.host === "string" ? e.last.host : "a provider host",
    outside: strings(e?.outside),
    reports: flag.raisedCount,
  };
}
