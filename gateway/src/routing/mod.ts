/**
 * Routing: which agent serves a request, and what happens when it fails before answering. One object the
 * request path holds: the policy (`policy.ts`: candidates and their order), the circuit breakers
 * (`breaker.ts`), the measured scores (`scores.ts`) and the failover bounds (`failover.ts`). The request path
 * reports each attempt's outcome here (`served`, `failed`), which feeds both the breakers and the scores.
 */
import type { AgentRegistry } from "../tunnel/registry.ts";
import { observeBreakerChange, observeRoutingAttempt, type RoutingAttemptResult } from "../observability/metrics.ts";
import { CircuitBreakers, DEFAULT_BREAKER_OPTIONS, type BreakerOptions } from "./breaker.ts";
import { DEFAULT_FAILOVER_LIMITS, type FailoverLimits } from "./failover.ts";
import { RoutingPolicy, streamHeadroom, type Headroom, type RemoteCandidates } from "./policy.ts";
import { AgentScores } from "./scores.ts";
import type { StickyRoutes } from "./sticky.ts";
import type { FileRoutes } from "./files.ts";
import { type AgentRestriction } from "./policy.ts";
import type { BreakerSnapshot } from "./breaker_snapshot.ts";

export { agentFaultStatus, rateLimitedRetryMs, retryableReset, DEFAULT_FAILOVER_LIMITS, type FailoverLimits } from "./failover.ts";
export { NO_RESTRICTION, permits, type AgentRestriction, type Candidate, type NoCandidate, type RemoteCandidates, type RouteRequest } from "./policy.ts";
export { ResponseIdTap, StickyRoutes } from "./sticky.ts";
export { FileRoutes, FileObjectTap, fileListQuery, type FileRoute } from "./files.ts";
export { BreakerSnapshot } from "./breaker_snapshot.ts";
export { DEFAULT_BREAKER_OPTIONS, type BreakerOptions, type BreakerState, type BreakerView } from "./breaker.ts";

export interface RoutingOptions {
  failover?: FailoverLimits;
  breaker?: BreakerOptions;
  /** Room per agent; default: open streams against the agent's stream limit. */
  headroom?: Headroom;
  now?: () => number;
  random?: () => number;
  /** Which agent created each stored response (for `previous_response_id`); null = no sticky routing. */
  sticky?: StickyRoutes | null;
  /** Which agent holds each file uploaded through the hub; null = no Files API. */
  files?: FileRoutes | null;
  /** Agents connected to the other gateways (several gateways); none when absent. */
  remote?: RemoteCandidates;
  /** Where breaker changes are written for the portal; none when absent. */
  snapshot?: BreakerSnapshot;
  /** New agents' probation, ms (risk/probation.ts): they weigh less in the draw meanwhile; 0 / absent = none. */
  probationMs?: number;
}

export class Routing {
  readonly breakers: CircuitBreakers;
  readonly scores = new AgentScores();
  readonly policy: RoutingPolicy;
  readonly failover: FailoverLimits;
  readonly sticky: StickyRoutes | null;
  readonly files: FileRoutes | null;
  readonly #registry: AgentRegistry;
  readonly #random: () => number;

  constructor(registry: AgentRegistry, opts: RoutingOptions = {}) {
    this.failover = opts.failover ?? DEFAULT_FAILOVER_LIMITS;
    this.sticky = opts.sticky ?? null;
    this.files = opts.files ?? null;
    this.#registry = registry;
    this.#random = opts.random ?? Math.random;
    this.breakers = new CircuitBreakers(opts.breaker ?? DEFAULT_BREAKER_OPTIONS, opts.now);
    this.breakers.onChange((agentId, model, _from, to) => {
      observeBreakerChange(to);
      opts.snapshot?.changed(agentId, model, to);
    });
    this.policy = new RoutingPolicy(registry, this.breakers, this.scores, opts.headroom ?? streamHeadroom, opts.random, opts.remote, {
      ms: opts.probationMs ?? 0,
      now: opts.now ?? Date.now,
    });
  }

  /**
   * Where a file upload goes: a connected agent of this gateway that can keep files (`AgentRegistry.fileHosts`),
   * the key's restriction accepts and the policy would route to now (active, room, breaker closed), chosen at
   * random among them; null when there is none.
   */
  fileHost(restriction: AgentRestriction, exclude: ReadonlySet<string>): { agentId: string; model: string } | null {
    const hosts = this.#registry.fileHosts();
    // Fisher–Yates: an upload is spread over the agents that can take it.
    for (let i = hosts.length - 1; i > 0; i--) {
      const j = Math.floor(this.#random() * (i + 1));
      [hosts[i], hosts[j]] = [hosts[j]!, hosts[i]!];
    }
    for (const host of hosts) {
      const plan = this.policy.plan({ api: "openai", model: host.model, pinnedAgentId: host.agentId, contextTokensNeeded: null, restriction, exclude });
      if (plan.ok) return host;
    }
    return null;
  }

  /** The agent answered with a response head that is not its fault, `ttfbMs` after the attempt was dispatched. */
  responded(agentId: string, model: string, ttfbMs: number): void {
    this.scores.success(agentId, model, ttfbMs);
  }

  /**
   * That response ended whole: the breaker closes (or stays closed). Judged at the end, not at the head, so an
   * agent whose streams break mid-body still opens its breaker.
   */
  served(agentId: string, model: string): void {
    this.breakers.success(agentId, model);
  }

  /** The attempt ended without telling anything of the agent (the client left, the gateway refused the body). */
  released(agentId: string, model: string): void {
    this.breakers.release(agentId, model);
  }

  /** The agent failed the attempt (its fault: an error status, a refusal, a lost connection, a broken stream). */
  failed(agentId: string, model: string): void {
    this.breakers.failure(agentId, model);
    this.scores.failure(agentId, model);
  }

  /** How a request's routing ended, for the metrics. */
  ended(result: RoutingAttemptResult): void {
    observeRoutingAttempt(result);
  }
}
