import "server-only";
import { walletBalance } from "@wellspring/gateway";
import { pool } from "../db";
import type { Actor } from "./actor";

export interface Balance {
  availableMicros: bigint;
  reservedMicros: bigint;
  spentMicros: bigint;
}

export async function balance(actor: Actor): Promise<Balance> {
  const w = await walletBalance(pool(), actor.userId);
  return { availableMicros: w.available, reservedMicros: w.reserved, spentMicros: w.spent };
}

export interface DaySpend {
  day: string;
  spentMicros: bigint;
  requests: number;
}

/** Spend per UTC day for the last `days` days (days without spend included as 0), from the daily rollup. */
export async function spendByDay(actor: Actor, days = 30): Promise<DaySpend[]> {
  const r = await pool().query<{ day: string; spent: string; requests: string }>(
    `SELECT to_char(d, 'YYYY-MM-DD') AS day, COALESCE(SUM(u.spent_micros), 0)::text AS spent, COALESCE(SUM(u.requests), 0)::text AS requests
     FROM generate_series((now() AT TIME ZONE 'UTC')::date - ($2::int - 1), (now() AT TIME ZONE 'UTC')::date, interval '1 day') AS d
     LEFT JOIN usage_daily u ON u.user_id = $1 AND u.day = d::date
     GROUP BY d ORDER BY d`,
    [actor.userId, days],
  );
  return r.rows.map((x) => ({ day: x.day, spentMicros: BigInt(x.spent), requests: Number(x.requests) }));
}

export async function spendByModel(actor: Actor, days = 30): Promise<{ model: string; spentMicros: bigint; requests: number }[]> {
  const r = await pool().query<{ model: string; spent: string; requests: string }>(
    `SELECT model, SUM(spent_micros)::text AS spent, SUM(requests)::text AS requests FROM usage_daily
     WHERE user_id = $1 AND day > (now() AT TIME ZONE 'UTC')::date - $2::int
     GROUP BY model HAVING SUM(requests) > 0 ORDER BY SUM(spent_micros) DESC LIMIT 20`,
    [actor.userId, days],
  );
  return r.rows.map((x) => ({ model: x.model, spentMicros: BigInt(x.spent), requests: Number(x.requests) }));
}

export interface UsageRow {
  id: string;
  startedAt: Date;
  keyName: string;
  model: string | null;
  route: string;
  httpStatus: number;
  endCause: string;
  inputTokens: number | null;
  outputTokens: number | null;
  estimated: boolean;
  chargeMicros: bigint | null;
  durationMs: number;
}

export interface UsageFilter {
  keyId?: string;
  model?: string;
  /** UTC dates, YYYY-MM-DD, inclusive. */
  from?: string;
  to?: string;
}

/** Rows per usage page. */
export const USAGE_PAGE_ROWS = 50;

/**
 * The actor's requests, newest first, a page at a time (keyset pagination on (started_at, id), so page N
 * costs the same as page 1 however many rows there are). Never content.
 */
export async function usagePage(actor: Actor, filter: UsageFilter, before?: { startedAt: Date; id: string }, limit = USAGE_PAGE_ROWS): Promise<UsageRow[]> {
  const where = ["r.user_id = $1"];
  const args: unknown[] = [actor.userId];
  const arg = (v: unknown) => {
    args.push(v);
    return `$${args.length}`;
  };
  if (filter.keyId) where.push(`r.key_id = ${arg(filter.keyId)}`);
  if (filter.model) where.push(`r.model = ${arg(filter.model)}`);
  if (filter.from) where.push(`r.started_at >= ${arg(filter.from)}::date AT TIME ZONE 'UTC'`);
  if (filter.to) where.push(`r.started_at < (${arg(filter.to)}::date + 1) AT TIME ZONE 'UTC'`);
  if (before) where.push(`(r.started_at, r.id) < (${arg(before.startedAt)}, ${arg(before.id)})`);
  const r = await pool().query(
    `SELECT r.id, r.started_at, k.name AS key_name, r.model, r.route, r.http_status, r.end_cause, r.input_tokens, r.output_tokens,
            r.usage_estimated, r.user_charge_micros::text AS charge, r.duration_ms
     FROM request_records r JOIN virtual_keys k ON k.id = r.key_id
     WHERE ${where.join(" AND ")} ORDER BY r.started_at DESC, r.id DESC LIMIT ${arg(limit)}`,
    args,
  );
  return r.rows.map((x: Record<string, unknown>) => ({
    id: x.id as string,
    startedAt: x.started_at as Date,
    keyName: x.key_name as string,
    model: x.model as string | null,
    route: x.route as string,
    httpStatus: x.http_status as number,
    endCause: x.end_cause as string,
    inputTokens: x.input_tokens as number | null,
    outputTokens: x.output_tokens as number | null,
    estimated: x.usage_estimated as boolean,
    chargeMicros: x.charge === null ? null : BigInt(x.charge as string),
    durationMs: x.duration_ms as number,
  }));
}
