/**
 * The hub's authoritative money ledger (PostgreSQL): wallets with available and reserved balances,
 * reserve-before-dispatch and settle-once per request, and a double-entry journal from which every balance
 * can be derived. Every operation is one transaction and idempotent by its id, so a retry never counts twice.
 *
 * Concurrency: a reservation is a single conditional UPDATE on the wallet row (`available >= amount`), so any
 * number of concurrent requests — on any number of gateways — can never spend more than the balance.
 */
import type pg from "pg";

export type ReserveResult = "reserved" | "duplicate" | "insufficient_balance";
export type SettleResult =
  | { outcome: "settled"; chargedMicros: bigint; releasedMicros: bigint }
  | { outcome: "already_settled" | "unknown_request" };

export interface Settlement {
  /** What the request cost the user; capped at the reservation. */
  chargeMicros: bigint;
  /** The owner credited, and what they earn (capped at the charge); null for no owner. */
  ownerId: string | null;
  ownerEarningMicros: bigint;
  /** The token counts charged, whether they were estimated, and how the request ended (kept with the charge). */
  usage?: { inputTokens: number; outputTokens: number; cachedInputTokens: number };
  estimated?: boolean;
  endCause?: string;
  /** Set when the request was held against a gateway's credit lease instead of a reservation of its own. */
  lease?: LeasedHold;
}

/** A request held in a gateway's memory against a lease: its reservation record is written when it settles. */
export interface LeasedHold {
  leaseId: string;
  userId: string;
  /** The most the request could cost, held from the lease while it ran. */
  reservedMicros: bigint;
  meta: ReserveMeta;
}

/** What a reservation was priced with and who it pays, recorded with it (the durable record of the charge). */
export interface ReserveMeta {
  priceVer: number;
  planId: string;
  api: string;
  model: string;
  agentId: string | null;
  ownerId: string | null;
  tier: "S" | "A" | "discount" | null;
  tierBps: number | null;
}

export interface AuditReport {
  ok: boolean;
  problems: string[];
  journalSumMicros: bigint;
  walletsChecked: number;
}

export const ACCOUNT_FUNDING = "platform:funding";
export const ACCOUNT_MARGIN = "platform:margin";
export const userAccount = (id: string) => `user:${id}`;
export const ownerAccount = (id: string) => `owner:${id}`;

/**
 * Credits a wallet inside the caller's transaction: funding → user, one balanced transaction claimed by
 * `txId` (a retry finds it and changes nothing).
 */
export async function postCredit(c: pg.PoolClient, userId: string, amountMicros: bigint, kind: string, txId: string): Promise<"credited" | "duplicate"> {
  if (amountMicros <= 0n) throw new RangeError("credit amount must be positive");
  await c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [txId]);
  const claimed = await c.query("SELECT 1 FROM journal_entries WHERE tx_id = $1 LIMIT 1", [txId]);
  if (claimed.rowCount) return "duplicate";
  await c.query(
    `INSERT INTO wallets (user_id, available_micros) VALUES ($1, $2)
     ON CONFLICT (user_id) DO UPDATE SET available_micros = wallets.available_micros + EXCLUDED.available_micros, updated_at = now()`,
    [userId, amountMicros.toString()],
  );
  await c.query(
    `INSERT INTO journal_entries (tx_id, account, amount_micros, kind) VALUES ($1, $2, $3, $5), ($1, $4, $6, $5)`,
    [txId, ACCOUNT_FUNDING, (-amountMicros).toString(), userAccount(userId), kind, amountMicros.toString()],
  );
  return "credited";
}

/**
 * A user's balance: available, held by requests in flight, and spent so far (the running total settlement
 * keeps on the wallet row, which the audit checks against the journal). Zeros for a user with no wallet.
 */
export async function walletBalance(pool: pg.Pool, userId: string): Promise<{ available: bigint; reserved: bigint; spent: bigint }> {
  const r = await pool.query<{ available: string; reserved: string; spent: string }>(
    "SELECT available_micros::text AS available, reserved_micros::text AS reserved, spent_micros::text AS spent FROM wallets WHERE user_id = $1",
    [userId],
  );
  const row = r.rows[0];
  return { available: BigInt(row?.available ?? "0"), reserved: BigInt(row?.reserved ?? "0"), spent: BigInt(row?.spent ?? "0") };
}

export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const out = await fn(client);
    await client.query("COMMIT");
    return out;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** The parameters every settle statement takes, in order: charge, owner, earning, token counts, estimated, end cause. */
function settlementColumns(items: readonly { settlement: Settlement }[]): unknown[][] {
  const col = <T>(f: (s: Settlement) => T) => items.map((i) => f(i.settlement));
  return [
    col((s) => s.chargeMicros.toString()),
    col((s) => s.ownerId),
    col((s) => s.ownerEarningMicros.toString()),
    col((s) => s.usage?.inputTokens ?? null),
    col((s) => s.usage?.outputTokens ?? null),
    col((s) => s.usage?.cachedInputTokens ?? null),
    col((s) => s.estimated ?? false),
    col((s) => s.endCause ?? null),
  ];
}

/** A row of `wellspring_settle` / `wellspring_settle_leased` as the caller sees it. */
function settleResult(row: { outcome: string; charged: string; released: string }): SettleResult {
  return row.outcome === "settled"
    ? { outcome: "settled", chargedMicros: BigInt(row.charged), releasedMicros: BigInt(row.released) }
    : { outcome: row.outcome as "already_settled" | "unknown_request" };
}

export class Ledger {
  constructor(private readonly pool: pg.Pool) {}

  /** Adds money to a user's wallet (top-up, grant, redemption); idempotent by `txId`. */
  async credit(userId: string, amountMicros: bigint, kind: string, txId: string): Promise<"credited" | "duplicate"> {
    return inTransaction(this.pool, (c) => postCredit(c, userId, amountMicros, kind, txId));
  }

  /**
   * Holds the most a request may cost, before any upstream call. Idempotent by request id. One statement
   * (`wellspring_reserve`, migration ledger_functions): a conditional UPDATE of the wallet row, then the
   * reservation row — never more than the balance, whatever runs concurrently.
   */
  async reserve(requestId: string, userId: string, amountMicros: bigint, meta?: ReserveMeta): Promise<ReserveResult> {
    if (amountMicros < 0n) throw new RangeError("reservation must not be negative");
    const r = await this.pool.query<{ outcome: ReserveResult }>(
      "SELECT wellspring_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) AS outcome",
      [requestId, userId, amountMicros.toString(), meta?.priceVer ?? null, meta?.planId ?? null, meta?.api ?? null, meta?.model ?? null,
        meta?.agentId ?? null, meta?.ownerId ?? null, meta?.tier ?? null, meta?.tierBps ?? null],
    );
    return r.rows[0]!.outcome;
  }

  /**
   * Settles a reservation once: charges at most what was reserved, pays the owner at most the charge,
   * returns the rest, posts the balanced journal. One statement (`wellspring_settle`).
   */
  async settle(requestId: string, s: Settlement): Promise<SettleResult> {
    if (s.chargeMicros < 0n || s.ownerEarningMicros < 0n) throw new RangeError("charge and earning must not be negative");
    if (s.lease) return (await this.settleMany([{ requestId, settlement: s }]))[0]!;
    const r = await this.pool.query<{ outcome: string; charged: string; released: string }>(
      "SELECT outcome, charged::text, released::text FROM wellspring_settle($1, $2, $3, $4, $5, $6, $7, $8, $9)",
      [requestId, s.chargeMicros.toString(), s.ownerId, s.ownerEarningMicros.toString(), s.usage?.inputTokens ?? null, s.usage?.outputTokens ?? null,
        s.usage?.cachedInputTokens ?? null, s.estimated ?? false, s.endCause ?? null],
    );
    return settleResult(r.rows[0]!);
  }

  /**
   * Settles many reservations in one round trip (one statement, one transaction). Items are settled in the
   * order given; callers order them by user so concurrent batches lock wallets in the same order.
   */
  async settleMany(items: readonly { requestId: string; settlement: Settlement }[]): Promise<SettleResult[]> {
    for (const { settlement: s } of items) {
      if (s.chargeMicros < 0n || s.ownerEarningMicros < 0n) throw new RangeError("charge and earning must not be negative");
    }
    const leased = items.filter((i) => i.settlement.lease);
    if (leased.length === items.length) return this.#settleLeased(items);
    if (leased.length > 0) {
      // Mixed batches (not made by the gateway, which always leases): each kind in its own statement.
      const own = await this.settleMany(items.filter((i) => !i.settlement.lease));
      const viaLease = await this.#settleLeased(leased);
      let a = 0;
      let b = 0;
      return items.map((i) => (i.settlement.lease ? viaLease[b++]! : own[a++]!));
    }
    const r = await this.pool.query<{ outcome: string; charged: string; released: string }>(
      `SELECT s.outcome, s.charged::text, s.released::text
       FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::int[], $6::int[], $7::int[], $8::bool[], $9::"EndCause"[])
         WITH ORDINALITY AS x(request_id, charge, owner_id, earning, input_tokens, output_tokens, cached_tokens, estimated, end_cause, ord)
       CROSS JOIN LATERAL wellspring_settle(x.request_id, x.charge, x.owner_id, x.earning, x.input_tokens, x.output_tokens, x.cached_tokens, x.estimated, x.end_cause) AS s
       ORDER BY x.ord`,
      [items.map((i) => i.requestId), ...settlementColumns(items)],
    );
    return r.rows.map(settleResult);
  }

  async #settleLeased(items: readonly { requestId: string; settlement: Settlement }[]): Promise<SettleResult[]> {
    const col = <T>(f: (s: Settlement, l: LeasedHold, id: string) => T) => items.map((i) => f(i.settlement, i.settlement.lease!, i.requestId));
    const r = await this.pool.query<{ outcome: string; charged: string; released: string }>(
      `SELECT s.outcome, s.charged::text, s.released::text
       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::int[], $9::int[], $10::int[],
                   $11::bool[], $12::"EndCause"[], $13::int[], $14::text[], $15::text[], $16::text[], $17::text[], $18::"AgentTier"[], $19::int[])
         WITH ORDINALITY AS x(request_id, lease_id, user_id, reserved, charge, owner_id, earning, input_tokens, output_tokens, cached_tokens,
                              estimated, end_cause, price_ver, plan_id, api, model, agent_id, tier, tier_bps, ord)
       CROSS JOIN LATERAL wellspring_settle_leased(x.request_id, x.lease_id, x.user_id, x.reserved, x.charge, x.owner_id, x.earning,
         x.input_tokens, x.output_tokens, x.cached_tokens, x.estimated, x.end_cause, x.price_ver, x.plan_id, x.api, x.model, x.agent_id, x.tier, x.tier_bps) AS s
       ORDER BY x.ord`,
      [
        col((_, __, id) => id),
        col((_, l) => l.leaseId),
        col((_, l) => l.userId),
        col((_, l) => l.reservedMicros.toString()),
        ...settlementColumns(items),
        col((_, l) => l.meta.priceVer),
        col((_, l) => l.meta.planId),
        col((_, l) => l.meta.api),
        col((_, l) => l.meta.model),
        col((_, l) => l.meta.agentId),
        col((_, l) => l.meta.tier),
        col((_, l) => l.meta.tierBps),
      ],
    );
    return r.rows.map(settleResult);
  }

  /**
   * Grants (or tops up) a gateway's lease on a user's wallet: at most `wantMicros`, at least `minMicros`, and
   * no more than half the available balance unless `minMicros` needs more. Returns what was granted (0n:
   * the balance does not cover `minMicros`).
   */
  async lease(leaseId: string, userId: string, gatewayId: string, wantMicros: bigint, minMicros: bigint): Promise<bigint> {
    if (minMicros <= 0n || wantMicros < minMicros) throw new RangeError("a lease needs 0 < min ≤ want");
    const r = await this.pool.query<{ granted: string }>("SELECT wellspring_lease($1, $2, $3, $4, $5)::text AS granted", [leaseId, userId, gatewayId, wantMicros.toString(), minMicros.toString()]);
    return BigInt(r.rows[0]!.granted);
  }

  /** Returns what a lease still holds to the wallet and closes it; the amount returned (0n if already closed). */
  async releaseLease(leaseId: string): Promise<bigint> {
    const r = await this.pool.query<{ returned: string }>("SELECT wellspring_release_lease($1)::text AS returned", [leaseId]);
    return BigInt(r.rows[0]!.returned);
  }

  /** Marks leases as still in use (a sweeper closes leases nobody renewed); returns the ids that are no longer open. */
  async renewLeases(leaseIds: readonly string[]): Promise<string[]> {
    if (leaseIds.length === 0) return [];
    const r = await this.pool.query<{ id: string }>("UPDATE credit_leases SET renewed_at = now() WHERE id = ANY($1) AND released = false RETURNING id", [leaseIds]);
    const open = new Set(r.rows.map((x) => x.id));
    return leaseIds.filter((id) => !open.has(id));
  }

  /** Closes leases not renewed for `idleMs` (their gateway stopped); how many were closed. */
  async sweepLeases(idleMs: number): Promise<number> {
    const r = await this.pool.query<{ id: string }>(
      "SELECT id FROM credit_leases WHERE released = false AND renewed_at < now() - make_interval(secs => $1::double precision / 1000)",
      [idleMs],
    );
    for (const { id } of r.rows) await this.releaseLease(id);
    return r.rows.length;
  }

  /** Checks every invariant of the ledger; `ok` is false with a list of problems when one fails. */
  async audit(): Promise<AuditReport> {
    const problems: string[] = [];
    const sum = await this.pool.query<{ s: string | null }>("SELECT COALESCE(SUM(amount_micros), 0)::text AS s FROM journal_entries");
    const journalSumMicros = BigInt(sum.rows[0]!.s ?? "0");
    if (journalSumMicros !== 0n) problems.push(`journal sums to ${journalSumMicros}, not 0`);
    const unbalanced = await this.pool.query("SELECT tx_id FROM journal_entries GROUP BY tx_id HAVING SUM(amount_micros) <> 0 LIMIT 5");
    for (const r of unbalanced.rows as { tx_id: string }[]) problems.push(`transaction ${r.tx_id} does not balance`);
    const wallets = await this.pool.query<{ user_id: string; available: string; reserved: string; journal: string; held: string }>(`
      SELECT w.user_id, w.available_micros::text AS available, w.reserved_micros::text AS reserved,
        COALESCE((SELECT SUM(amount_micros) FROM journal_entries j WHERE j.account = 'user:' || w.user_id), 0)::text AS journal,
        (COALESCE((SELECT SUM(amount_micros) FROM reservations r WHERE r.user_id = w.user_id AND r.status = 'held'), 0)
          + COALESCE((SELECT SUM(amount_micros) FROM credit_leases l WHERE l.user_id = w.user_id AND NOT l.released), 0))::text AS held
      FROM wallets w`);
    for (const w of wallets.rows) {
      const available = BigInt(w.available);
      const reserved = BigInt(w.reserved);
      if (available < 0n || reserved < 0n) problems.push(`wallet ${w.user_id} is negative`);
      if (available + reserved !== BigInt(w.journal)) problems.push(`wallet ${w.user_id}: available + reserved ${available + reserved} ≠ journal ${w.journal}`);
      if (reserved !== BigInt(w.held)) problems.push(`wallet ${w.user_id}: reserved ${reserved} ≠ held reservations and leases ${w.held}`);
    }
    const overcharged = await this.pool.query("SELECT request_id FROM reservations WHERE charge_micros > amount_micros LIMIT 5");
    for (const r of overcharged.rows as { request_id: string }[]) problems.push(`request ${r.request_id} charged over its reservation`);
    const twice = await this.pool.query("SELECT request_id FROM journal_entries WHERE kind = 'usage' GROUP BY request_id HAVING COUNT(*) > 1 LIMIT 5");
    for (const r of twice.rows as { request_id: string }[]) problems.push(`request ${r.request_id} charged more than once`);
    const owners = await this.pool.query("SELECT account FROM journal_entries WHERE account LIKE 'owner:%' GROUP BY account HAVING SUM(amount_micros) < 0 LIMIT 5");
    for (const r of owners.rows as { account: string }[]) problems.push(`${r.account} is negative`);
    const pending = await this.pool.query<{ journal: string; payouts: string }>(`
      SELECT COALESCE((SELECT SUM(amount_micros) FROM journal_entries WHERE account = 'platform:payouts_pending'), 0)::text AS journal,
             COALESCE((SELECT SUM(amount_micros) FROM payouts WHERE status = 'requested'), 0)::text AS payouts`);
    const p = pending.rows[0]!;
    if (p.journal !== p.payouts) problems.push(`payouts pending in the journal ${p.journal} ≠ requested payouts ${p.payouts}`);
    const spent = await this.pool.query<{ user_id: string }>(`
      SELECT w.user_id FROM wallets w
      WHERE w.spent_micros <> COALESCE((SELECT -SUM(j.amount_micros) FROM journal_entries j WHERE j.account = 'user:' || w.user_id AND j.kind = 'usage'), 0)
         OR w.spent_micros <> COALESCE((SELECT SUM(u.spent_micros) FROM usage_daily u WHERE u.user_id = w.user_id), 0)
      LIMIT 5`);
    for (const r of spent.rows) problems.push(`wallet ${r.user_id}: spent total differs from its journal or its daily rollup`);
    const leases = await this.pool.query<{ id: string }>("SELECT id FROM credit_leases WHERE NOT released AND amount_micros <> granted_micros - charged_micros LIMIT 5");
    for (const r of leases.rows) problems.push(`lease ${r.id}: holds other than granted less charged`);
    const leaseCharges = await this.pool.query<{ id: string }>(`
      SELECT l.id FROM credit_leases l
      WHERE l.charged_micros <> COALESCE((SELECT SUM(r.charge_micros) FROM reservations r WHERE r.lease_id = l.id), 0) AND NOT l.released
      LIMIT 5`);
    for (const r of leaseCharges.rows) problems.push(`lease ${r.id}: charged total differs from its requests`);
    const earnings = await this.pool.query("SELECT request_id FROM reservations WHERE earning_micros > charge_micros LIMIT 5");
    for (const r of earnings.rows as { request_id: string }[]) problems.push(`request ${r.request_id} paid its owner more than it charged`);
    return { ok: problems.length === 0, problems, journalSumMicros, walletsChecked: wallets.rowCount ?? 0 };
  }
}

