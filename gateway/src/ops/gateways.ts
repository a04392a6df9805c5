/**
 * What admins see of the running gateways: which of them count limits locally because Redis does not answer
 * (each writes it on its row when it changes; docs/operations/gateway.md, "Limits").
 */
import type { Db } from "@wellspring/db/core";

/** A gateway counts as running while it reported itself alive this recently, ms. */
export const GATEWAY_ALIVE_WITHIN_MS = 60_000;

export interface DegradedLimitsGateway {
  gatewayId: string;
  since: Date;
}

/** Running gateways whose limits are degraded to local counting (Redis unreachable), oldest first. */
export async function degradedLimitsGateways(db: Db, now = new Date()): Promise<DegradedLimitsGateway[]> {
  const rows = await db.gateway.findMany({
    where: { stoppedAt: null, lastSeenAt: { gt: new Date(now.getTime() - GATEWAY_ALIVE_WITHIN_MS) }, limitsDegradedSince: { not: null } },
    orderBy: { limitsDegradedSince: "asc" },
    select: { id: true, limitsDegradedSince: true },
    take: 100,
  });
  return rows.map((r) => ({ gatewayId: r.id, since: r.limitsDegradedSince! }));
}
