/**
 * Circuit breakers as the portal shows them: each gateway writes the breakers it holds open or half-open to
 * `agent_breakers` when one changes state (a closed one's row is deleted), so the owner's and the admin's agent
 * pages can say which agent × model is kept from traffic, on which gateway, since when. Breaker changes are rare
 * (an agent failing `failuresToOpen` times), so this is one small write per change, in order, off the request
 * path; a failed write is logged and the next change of that breaker writes it again.
 */
import type { Db } from "@wellspring/db/core";
import type { Logger } from "../log.ts";
import type { BreakerState } from "./breaker.ts";

export class BreakerSnapshot {
  #writes: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: Pick<Db, "$executeRaw">,
    private readonly gatewayId: string,
    private readonly log: Logger,
  ) {}

  /** A breaker of this gateway moved to `to`. */
  changed(agentId: string, model: string, to: BreakerState): void {
    const { db, gatewayId } = this;
    this.#writes = this.#writes
      .then(() =>
        to === "closed"
          ? db.$executeRaw`DELETE FROM agent_breakers WHERE gateway_id = ${gatewayId} AND agent_id = ${agentId} AND model = ${model}`
          : db.$executeRaw`
              INSERT INTO agent_breakers (gateway_id, agent_id, model, state, since) VALUES (${gatewayId}, ${agentId}, ${model}, ${to}, now())
              ON CONFLICT (gateway_id, agent_id, model) DO UPDATE SET state = EXCLUDED.state, since = EXCLUDED.since`,
      )
      .catch((error: unknown) => this.log.warn("routing.breaker_snapshot_failed", { agentId, model, error }));
  }

  /** The gateway starts or stops: none of its breakers are shown any more. */
  async clear(): Promise<void> {
    await this.#writes;
    await this.db.$executeRaw`DELETE FROM agent_breakers WHERE gateway_id = ${this.gatewayId}`;
  }
}
