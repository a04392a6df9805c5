/**
 * The routing policy: which connected agents may serve a request, and in which order to try them.
 *
 * Candidates serve the request's API family and model, are active and routable, hold a context window the
 * request fits (when the agent reported one), are allowed by the key's restriction (owners, minimum tier), are
 * not excluded (already tried for this request), have headroom, and whose breaker for the model is not open.
 * They are ordered in classes — the discount lane first (owners accepted a lower share for priority), then tier
 * S before tier A — and within a class by a weighted random draw (weight = measured score × headroom), so the
 * best agent gets most traffic but one agent is never hammered while its peers idle. An agent on probation (enrolled
 * less than AGENT_PROBATION_HOURS ago) weighs AGENT_PROBATION_WEIGHT_FACTOR as much in that draw: a bounded share
 * while peers have room, all of it when it is the only one.
 *
 * Candidates are the agents connected to this gateway and, with several gateways, those connected to the
 * others (`RemoteCandidates`, reached through a gateway link): the same policy orders both. A remote agent's
 * context window is not known here (null), so only a local agent is skipped for a request too long for it.
 */
import type { ApiFamily } from "@wellspring/protocol";
import type { AgentLink } from "../tunnel/hub_stream.ts";
import type { AgentProfile, AgentRegistry, Tier } from "../tunnel/registry.ts";
import type { CircuitBreakers } from "./breaker.ts";
import type { AgentScores } from "./scores.ts";

/** Which agents a key (or its user) accepts. Empty owners = any owner; null tier = any tier. */
export interface AgentRestriction {
  ownerIds: readonly string[];
  minTier: "S" | "A" | null;
}

export const NO_RESTRICTION: AgentRestriction = { ownerIds: [], minTier: null };

/** What an agent on probation (risk/probation.ts) weighs in the draw against an established agent of its class (a factor). */
export const AGENT_PROBATION_WEIGHT_FACTOR = 0.1;

/**
 * How much room an agent has for one more request of a model, in [0, 1]: 0 = none (it is skipped), 1 = idle;
 * and whether it said its own rate limit has no room now (`saturated`: tried only after every agent with room).
 */
export interface Headroom {
  room(conn: AgentLink, model: string): number;
  saturated?(conn: AgentLink): boolean;
}

/**
 * The agent's open streams against its stream limit, and its own rate limit as it reported it (CONTROL
 * RATE_STATE: no room for `retryAfterMs`). A saturated agent is not skipped — when it is the only one, its refusal
 * (RESET RATE_LIMITED) becomes the user's 429 with its retry time — but every agent with room is tried first.
 */
export const streamHeadroom: Headroom = {
  room(conn) {
    const capacity = conn.capacity;
    if (capacity <= 0 || conn.inFlight >= capacity) return 0;
    return (capacity - conn.inFlight) / capacity;
  },
  saturated(conn) {
    return conn.rateSaturatedUntilMs > Date.now();
  },
};

/** The class of agents whose own rate limit has no room now: below every other. */
const SATURATED_CLASS = -1;

export interface RouteRequest {
  api: ApiFamily;
  model: string;
  /**
   * Tokens the request may need in the context window (estimated input + requested output), null when unknown;
   * a function is called only when some agent serving the model reported its window.
   */
  contextTokensNeeded: number | null | (() => number | null);
  restriction: AgentRestriction;
  /** Agents already tried for this request. */
  exclude: ReadonlySet<string>;
  /** Only this agent may serve it (it holds the stored object the request names); null or absent = any. */
  pinnedAgentId?: string | null;
}

export interface Candidate {
  conn: AgentLink;
  agentId: string;
  profile: AgentProfile;
}

/** Why a request has no candidate, for the answer's message and status. */
export type NoCandidate =
  /** No connected agent serves the model at all. */
  | "not_served"
  /** Every agent serving it (that the key accepts) has a known context window too small for the request. */
  | "context_too_long"
  /** The key's restriction leaves no agent serving it. */
  | "restricted"
  /** Agents exist but none is usable now (busy, paused, breaker open, all tried). */
  | "unavailable"
  /** The request is pinned to an agent that is not connected (or no longer serves the model). */
  | "pinned_gone";

export type RoutePlan = { ok: true; candidates: Candidate[] } | { ok: false; reason: NoCandidate };

const TIER_RANK: Record<Tier, number> = { S: 2, A: 1, discount: 0 };

/** Agents serving a model on other gateways, none of them connected to this one (`peers/mod.ts`). */
export interface RemoteCandidates {
  serving(
    api: ApiFamily,
    model: string,
  ): readonly (AgentLink & { readonly agentId: string; readonly profile: AgentProfile; contextTokens(api: ApiFamily, model: string): number | null })[];
}

const NO_REMOTE: RemoteCandidates = { serving: () => [] };

export class RoutingPolicy {
  constructor(
    private readonly registry: AgentRegistry,
    private readonly breakers: CircuitBreakers,
    private readonly scores: AgentScores,
    private readonly headroom: Headroom = streamHeadroom,
    private readonly random: () => number = Math.random,
    private readonly remote: RemoteCandidates = NO_REMOTE,
    /** New agents' probation: an agent enrolled less than `ms` ago weighs AGENT_PROBATION_WEIGHT_FACTOR as much. */
    private readonly probation: { ms: number; now: () => number } = { ms: 0, now: Date.now },
  ) {}

  /** Every agent serving the model: this gateway's, then the other gateways'. */
  *#serving(api: ApiFamily, model: string): Generator<{ conn: AgentLink; agentId: string; profile: AgentProfile | undefined; contextTokens: number | null }> {
    for (const [conn, contextTokens] of this.registry.serving(api, model)) {
      yield { conn, agentId: conn.agentId!, profile: this.registry.profile(conn.agentId!), contextTokens };
    }
    for (const r of this.remote.serving(api, model)) yield { conn: r, agentId: r.agentId, profile: r.profile, contextTokens: r.contextTokens(api, model) };
  }

  /** The candidates for a request, in the order to try them. Does not claim a half-open breaker's probe. */
  plan(req: RouteRequest): RoutePlan {
    const serving = [...this.#serving(req.api, req.model)];
    const pinned = req.pinnedAgentId ?? null;
    if (pinned !== null && !serving.some((c) => c.agentId === pinned)) return { ok: false, reason: "pinned_gone" };
    if (serving.length === 0) return { ok: false, reason: "not_served" };
    // Judged in this order: the key's restriction, then the context window, then availability now.
    let needed: number | null | undefined = typeof req.contextTokensNeeded === "function" ? undefined : req.contextTokensNeeded;
    let fits = 0;
    let allowed = 0;
    const ranked: { c: Candidate; cls: number; key: number }[] = [];
    for (const { conn, agentId, profile, contextTokens } of serving) {
      if (pinned !== null && agentId !== pinned) continue;
      if (!profile) continue;
      if (!permits(req.restriction, profile)) continue;
      allowed++;
      if (contextTokens !== null) {
        if (needed === undefined) needed = (req.contextTokensNeeded as () => number | null)();
        if (needed !== null && needed > contextTokens) continue;
      }
      fits++;
      if (!conn.routable || profile.status !== "active" || req.exclude.has(agentId)) continue;
      if (!this.breakers.allows(agentId, req.model, false)) continue;
      const room = this.headroom.room(conn, req.model);
      if (room <= 0) continue;
      const onProbation = profile.createdAt !== undefined && this.probation.now() - profile.createdAt.getTime() < this.probation.ms;
      const weight = this.scores.weight(agentId, req.model) * room * (onProbation ? AGENT_PROBATION_WEIGHT_FACTOR : 1);
      // Exponential race: sorting by −ln(u)/w draws a weighted order without replacement.
      const key = -Math.log(1 - this.random()) / weight;
      const cls = this.headroom.saturated?.(conn) ? SATURATED_CLASS : (profile.discountLane ? 10 : 0) + TIER_RANK[profile.tier];
      ranked.push({ c: { conn, agentId, profile }, cls, key });
    }
    if (allowed === 0) return { ok: false, reason: "restricted" };
    if (fits === 0) return { ok: false, reason: "context_too_long" };
    if (ranked.length === 0) return { ok: false, reason: "unavailable" };
    ranked.sort((a, b) => b.cls - a.cls || a.key - b.key);
    return { ok: true, candidates: ranked.map((r) => r.c) };
  }

  /**
   * The first candidate whose breaker lets it through now (claiming a half-open breaker's one probe), or null.
   * Called per attempt, so a breaker that opened meanwhile is respected.
   */
  claim(candidates: readonly Candidate[], model: string, exclude: ReadonlySet<string>): Candidate | null {
    for (const c of candidates) {
      if (exclude.has(c.agentId) || !c.conn.routable || c.conn.isClosed) continue;
      if (this.headroom.room(c.conn, model) <= 0) continue;
      if (this.breakers.allows(c.agentId, model, true)) return c;
    }
    return null;
  }
}

/** Whether a key's restriction accepts an agent. The minimum tier compares the admin-set tier (S above A). */
export function permits(r: AgentRestriction, profile: AgentProfile): boolean {
  if (r.ownerIds.length > 0 && !r.ownerIds.includes(profile.ownerId)) return false;
  if (r.minTier !== null && TIER_RANK[profile.tier] < TIER_RANK[r.minTier]) return false;
  return true;
}
