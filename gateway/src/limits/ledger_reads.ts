/** What the limiter reads from PostgreSQL: live gateways (to divide limits while Redis is down) and a key's month spend. */
import type pg from "pg";

/** Gateways that reported themselves alive within `deadAfterMs` (at least this one). */
export async function liveGatewayCount(pool: pg.Pool, deadAfterMs: number): Promise<number> {
  const r = await pool.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM gateways WHERE stopped_at IS NULL AND last_seen_at > now() - make_interval(secs => $1::double precision / 1000)`,
    [deadAfterMs],
  );
  return Math.max(1, Number(r.rows[0]?.n ?? 1));
}

/** Other gateways alive on this database now (their ids), for refusing a second gateway without Redis. */
export async function otherLiveGateways(pool: pg.Pool, gatewayId: string, deadAfterMs: number): Promise<string[]> {
  const r = await pool.query<{ id: string }>(
    `SELECT id FROM gateways WHERE id <> $1 AND stopped_at IS NULL AND last_seen_at > now() - make_interval(secs => $2::double precision / 1000) ORDER BY id LIMIT 5`,
    [gatewayId, deadAfterMs],
  );
  return r.rows.map((row) => row.id);
}

/** When each gateway last reported itself alive (ms since the epoch). */
export async function gatewaysLastSeen(pool: pg.Pool, ids: string[]): Promise<Map<string, number>> {
  const r = await pool.query<{ id: string; at: Date }>(`SELECT id, last_seen_at AS at FROM gateways WHERE id = ANY($1::text[])`, [ids]);
  return new Map(r.rows.map((row) => [row.id, row.at.getTime()]));
}

/** What a key was charged since `since` (the UTC month's start), µ$, from the request records. */
export async function keyChargedSinceMicros(pool: pg.Pool, keyId: string, since: Date): Promise<bigint> {
  const r = await pool.query<{ s: string | null }>(
    `SELECT coalesce(sum(user_charge_micros), 0)::text AS s FROM request_records WHERE key_id = $1 AND started_at >= $2`,
    [keyId, since],
  );
  return BigInt(r.rows[0]?.s ?? "0");
}

/** How often a gateway checks whether its limits' mode changed, to write it for the admins' alert, ms. */
export const LIMITS_STATUS_INTERVAL_MS = 2_000;

/** Writes since when this gateway counts limits locally (Redis does not answer), or null when they are shared again. */
export async function reportLimitsDegraded(pool: pg.Pool, gatewayId: string, since: Date | null): Promise<void> {
  await pool.query(`UPDATE gateways SET limits_degraded_since = $2 WHERE id = $1`, [gatewayId, since]);
}
