/**
 * Agents connected to this gateway, indexed by the models they serve, with the standing routing and billing
 * read of each (its profile: owner, status, tier, discount lane — kept current by the hub's `agent_changed`
 * events). Which of them serves a request is the routing policy's choice (`routing/policy.ts`).
 */
import { apiFamilyOf, CloseCode, type ApiFamily } from "@wellspring/protocol";
import type { AgentConnection, AgentRecord } from "./agent_connection.ts";

export type Tier = "S" | "A" | "discount";

/** What routing and billing read of a connected agent. */
export interface AgentProfile {
  ownerId: string;
  status: AgentRecord["status"];
  /** Settlement tier the admin set. */
  tier: Tier;
  /** The owner opted into the discount lane: the discount share, and routing priority. */
  discountLane: boolean;
  /** Limits the hub holds the agent to (expert mode); null in auto mode (the agent paces itself). */
  limits: { rpm: number | null; tpm: number | null; concurrency: number | null } | null;
  /** When the agent was enrolled (its probation counts from here); absent = not on probation. */
  createdAt?: Date;
}

/** The tier a request routed to the agent now is settled at. */
export function effectiveTier(p: Pick<AgentProfile, "tier" | "discountLane">): Tier {
  return p.discountLane ? "discount" : p.tier;
}

export class AgentRegistry {
  readonly #byAgent = new Map<string, AgentConnection>();
  /** `api:model` → the connections serving it, with the context window each reported for it (null = unknown). */
  readonly #byModel = new Map<string, Map<AgentConnection, number | null>>();
  readonly #profiles = new Map<string, AgentProfile>();

  /** The standing of a connected agent (as of its handshake or the last change event). */
  profile(agentId: string): AgentProfile | undefined {
    return this.#profiles.get(agentId);
  }

  /** An agent's standing changed (handshake, admin, owner): routing and billing use it from now. */
  setProfile(
    agent: Pick<AgentRecord, "id" | "ownerId" | "status" | "tier" | "discountLane"> &
      Partial<Pick<AgentRecord, "rateMode" | "rpmLimit" | "tpmLimit" | "concurrencyLimit" | "createdAt">>,
  ): void {
    const limits =
      agent.rateMode === "expert" ? { rpm: agent.rpmLimit ?? null, tpm: agent.tpmLimit ?? null, concurrency: agent.concurrencyLimit ?? null } : null;
    this.#profiles.set(agent.id, {
      ownerId: agent.ownerId,
      status: agent.status,
      tier: agent.tier,
      discountLane: agent.discountLane,
      limits,
      ...(agent.createdAt ? { createdAt: agent.createdAt } : {}),
    });
    // The agent holds the owner's limits itself too (its token bucket): it hears of every change (CONFIG).
    if (agent.rateMode !== undefined)
      this.#byAgent.get(agent.id)?.sendConfig(limits ? { rateMode: "expert", ...limits } : { rateMode: "auto", rpm: null, tpm: null, concurrency: null });
  }

  get size(): number {
    return this.#byAgent.size;
  }

  connections(): AgentConnection[] {
    return [...this.#byAgent.values()];
  }

  get(agentId: string): AgentConnection | undefined {
    return this.#byAgent.get(agentId);
  }

  /**
   * A newly admitted connection. The identity guard admits a second connection of an agent only once the
   * first is dead (it did not answer a probe, or the agent reconnected from it), so an older one still
   * registered here is closed at once.
   */
  add(conn: AgentConnection): void {
    const previous = this.#byAgent.get(conn.agentId!);
    if (previous && previous !== conn) {
      this.#unindex(previous);
      previous.close(CloseCode.REPLACED, "replaced by a newer connection");
    }
    this.#byAgent.set(conn.agentId!, conn);
    this.#index(conn);
  }

  reindex(conn: AgentConnection): void {
    if (this.#byAgent.get(conn.agentId!) !== conn) return;
    this.#unindex(conn);
    this.#index(conn);
  }

  remove(conn: AgentConnection): void {
    if (conn.agentId && this.#byAgent.get(conn.agentId) === conn) {
      this.#byAgent.delete(conn.agentId);
      this.#profiles.delete(conn.agentId);
    }
    this.#unindex(conn);
  }

  #index(conn: AgentConnection): void {
    for (const m of conn.inventory?.models ?? []) {
      const key = `${apiFamilyOf(m.provider)}:${m.model}`;
      let set = this.#byModel.get(key);
      if (!set) this.#byModel.set(key, (set = new Map<AgentConnection, number | null>()));
      set.set(conn, m.contextTokens);
    }
  }

  #unindex(conn: AgentConnection): void {
    for (const [key, set] of this.#byModel) {
      set.delete(conn);
      if (set.size === 0) this.#byModel.delete(key);
    }
  }

  /** Models currently served by at least one connected agent, per API family. */
  models(api: ApiFamily): string[] {
    const prefix = `${api}:`;
    return [...this.#byModel.keys()]
      .filter((k) => k.startsWith(prefix))
      .map((k) => k.slice(prefix.length))
      .sort();
  }

  /**
   * Connected agents that can keep a file (an OpenAI upstream: the Files API is OpenAI's), each with the first
   * (by name) of the models it serves from OpenAI: an upload goes to the agent under that model, and every later
   * call on the file under the same one (the agent picks its provider key by model).
   */
  fileHosts(): { agentId: string; model: string }[] {
    const hosts: { agentId: string; model: string }[] = [];
    for (const [agentId, conn] of this.#byAgent) {
      let first: string | null = null;
      for (const m of conn.inventory?.models ?? []) if (m.provider === "openai" && (first === null || m.model < first)) first = m.model;
      if (first !== null) hosts.push({ agentId, model: first });
    }
    return hosts;
  }

  serves(api: ApiFamily, model: string): boolean {
    return (this.#byModel.get(`${api}:${model}`)?.size ?? 0) > 0;
  }

  /** The connections serving a model (routable or not), each with the context window it reported for it (null = unknown). */
  serving(api: ApiFamily, model: string): ReadonlyMap<AgentConnection, number | null> {
    return this.#byModel.get(`${api}:${model}`) ?? NONE;
  }
}

const NONE: ReadonlyMap<AgentConnection, number | null> = new Map();
