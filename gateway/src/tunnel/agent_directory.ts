/**
 * The agents' records in the database, as the tunnel side of the gateway reads and writes them: the lookup a
 * handshake verifies against, and what a connected agent reports (its inventory, the price version it holds).
 * `AgentConnection` knows none of this: it emits events, and the gateway persists them here.
 */
import type { Db } from "@wellspring/db/core";
import type { Inventory, RateState } from "@wellspring/protocol";
import type { Logger } from "../log.ts";
import type { AgentLookup, AgentRecord } from "./agent_connection.ts";

export class AgentDirectory implements AgentLookup {
  /** The reported limits last written per agent (one entry per agent that reported since the gateway started). */
  readonly #rateWritten = new Map<string, string>();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {}

  async find(agentId: string): Promise<AgentRecord | null> {
    return this.db.agent.findUnique({
      where: { id: agentId },
      select: {
        id: true,
        ownerId: true,
        publicKey: true,
        status: true,
        tier: true,
        discountLane: true,
        rateMode: true,
        rpmLimit: true,
        tpmLimit: true,
        concurrencyLimit: true,
        createdAt: true,
      },
    });
  }

  /** What the agent serves and holds (models, key fingerprints, version), as it said on connecting. */
  inventory(agentId: string, inv: Inventory): void {
    void this.db.agent
      .update({
        where: { id: agentId },
        data: {
          models: inv.models.map((m) => `${m.provider}:${m.model}`),
          contextWindows: Object.fromEntries(inv.models.filter((m) => m.contextTokens !== null).map((m) => [`${m.provider}:${m.model}`, m.contextTokens])),
          keyFingerprints: inv.keyFingerprints,
          version: inv.agentVersion,
          lastSeenAt: new Date(),
        },
      })
      .catch((error: unknown) => this.log.warn("tunnel.inventory_persist_failed", { agentId, error }));
  }

  /** The rate limits the agent reported holding (auto mode: learnt from its provider), for the owner's agent page. */
  rateState(agentId: string, state: RateState): void {
    // Reports also say when the agent has room; only a change of its limits is written.
    const key = `${state.rpm}:${state.tpm}`;
    if (this.#rateWritten.get(agentId) === key) return;
    this.#rateWritten.set(agentId, key);
    void this.db.agent
      .update({ where: { id: agentId }, data: { reportedRpm: state.rpm, reportedTpm: state.tpm, rateReportedAt: new Date() } })
      .catch((error: unknown) => this.log.warn("tunnel.rate_state_persist_failed", { agentId, error }));
  }

  /** The official price version the agent acknowledged holding. */
  priceAck(agentId: string, ver: number): void {
    void this.db.agent
      .update({ where: { id: agentId }, data: { priceVer: ver } })
      .catch((error: unknown) => this.log.warn("tunnel.price_ack_persist_failed", { agentId, error }));
  }
}
