/**
 * Which agents' circuit breakers are open or half-open now, as the live gateways wrote them
 * (`agent_breakers`, gateway/src/routing/breaker_snapshot.ts): read by the owner's and the admin's agent pages.
 * Rows of a gateway that died (its `gateway_peers` row ran out) are not shown.
 */
import type { Db } from "@wellspring/db/core";

export interface AgentBreakerView {
  agentId: string;
  model: string;
  /** open: no traffic; half_open: one probe request is let through. */
  state: "open" | "half_open";
  gatewayId: string;
  since: Date;
}

/** The breakers not closed of these agents, on live gateways; the caller scopes `agentIds` to what its actor may see. */
export async function liveBreakers(db: Pick<Db, "$queryRaw">, agentIds: readonly string[]): Promise<AgentBreakerView[]> {
  if (agentIds.length === 0) return [];
  return db.$queryRaw<AgentBreakerView[]>`
    SELECT b.agent_id AS "agentId", b.model, b.state, b.gateway_id AS "gatewayId", b.since
    FROM agent_breakers b JOIN gateway_peers p ON p.gateway_id = b.gateway_id
    WHERE b.agent_id = ANY(${[...agentIds]}::text[]) AND p.expires_at > now()
    ORDER BY b.agent_id, b.model, b.gateway_id`;
}
