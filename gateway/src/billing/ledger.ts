/**
 * The hub's authoritative money ledger (PostgreSQL): wallets with available and reserved balances, credit
 * leases (a gateway's hold on a slice of a wallet), settle-once per request, and a double-entry journal from
 * which every balance can be derived. Every operation is one statement or transaction and idempotent by its
 * id, so a retry never counts twice.
 *
 * Concurrency: a lease is granted by one conditional UPDATE on the wallet row (`available >= amount`), so any
 * number of gateways can never hold more than the balance; a request's charge beyond what it held (usage its
 * reservation did not foresee) is still charged, from the available balance, and flagged.
 */
import type pg from "pg";
import type { Usage } from "./usage.ts";

/**
 * How a settlement was written. `reservation` is the request's settlement row as the database holds it (JSON,
 * `row_to_json` of `reservations`): what the hub seals into the agent's receipt, returned by the write itself.
 */
export type SettleResult =
  | { outcome: "settled"; chargedMicros: bigint; releasedMicros: bigint; reservation: string }
  | { outcome: "already_settled"; reservation: string | null }
  | { outcome: "unknown_request" };

export interface Settlement {
  /** What the request cost the user, in full (it may exceed what was reserved). */
  chargeMicros: bigint;
  /** The owner credited, and what they earn (official cost × tier); null for no owner. */
  ownerId: string | null;
  ownerEarningMicros: bigint;
  /** The official cost of `usage` at the price version the request was priced with. */
  officialMicros: bigint;
  /** The plan multiplier the charge was computed with (bps); null when the plan has its own price for the model. */
  planBps: number | null;
  /** The units charged, whether they were estimated, and how the request ended (kept with the charge). */
  usage: Usage;
  estimated: boolean;
  endCause: string;
  /** The gateway lease the request was held against. */
  lease: LeasedHold;
}

/** A request held in a gateway's memory against a lease: its reservation record is written when it settles. */
export interface LeasedHold {
  leaseId: string;
  userId: string;
  /** The most the request was expected to cost, held from the lease while it ran. */
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
  /** Settled requests whose charge and earning were recomputed from their usage and the price table. */
  chargesChecked: number;
}

export const ACCOUNT_FUNDING = "platform:funding";
export const ACCOUNT_MARGIN = "platform:margin";
export const userAccount = (id: string) => `user:${id}`;
export const ownerAccount = (id: string) => `owner:${id}`;

/**
 * Moves `amountMicros` from one journal account to another inside the caller's transaction: one balanced
 * transaction claimed by `txId` (a retry finds it and changes nothing).
 */
export async function postTransfer(
  c: pg.PoolClient,
  txId: string,
  from: string,
  to: string,
  amountMicros: bigint,
  kind: string,
): Promise<"posted" | "duplicate"> {
  await c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [txId]);
  const claimed = await c.query("SELECT 1 FROM journal_entries WHERE tx_id = $1 LIMIT 1", [txId]);
  if (claimed.rowCount) return "duplicate";
  await c.query(`INSERT INTO journal_entries (tx_id, account, amount_micros, kind) VALUES ($1, $2, $3, $5), ($1, $4, $6, $5)`, [
    txId,
    from,
    (-amountMicros).toString(),
    to,
    kind,
    amountMicros.toString(),
  ]);
  return "posted";
}

/** Credits a wallet inside the caller's transaction: funding → user, claimed by `txId` (see `postTransfer`). */
export async function postCredit(c: pg.PoolClient, userId: string, amountMicros: bigint, kind: string, txId: string): Promise<"credited" | "duplicate"> {
  if (amountMicros <= 0n) throw new RangeError("credit amount must be positive");
  if ((await postTransfer(c, txId, ACCOUNT_FUNDING, userAccount(userId), amountMicros, kind)) === "duplicate") return "duplicate";
  await c.query(
    `INSERT INTO wallets (user_id, available_micros) VALUES ($1, $2)
     ON CONFLICT (user_id) DO UPDATE SET available_micros = wallets.available_micros + EXCLUDED.available_micros, updated_at = now()`,
    [userId, amountMicros.toString()],
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

/** A row of `wellspring_settle_batch` as the caller sees it. */
function settleResult(row: { outcome: string; charged: string; released: string; reservation: string | null }): SettleResult {
  if (row.outcome === "settled")
    return { outcome: "settled", chargedMicros: BigInt(row.charged), releasedMicros: BigInt(row.released), reservation: row.reservation! };
  if (row.outcome === "already_settled") return { outcome: "already_settled", reservation: row.reservation };
  return { outcome: "unknown_request" };
}

/** A settlement's 24 values in the order of the settlement functions' parameters (`wellspring_settle_batch`'s arrays). */
export function settlementRow(requestId: string, s: Settlement): unknown[] {
  const l = s.lease;
  const m = l.meta;
  const u = s.usage;
  return [
    requestId,
    l.leaseId,
    l.userId,
    l.reservedMicros.toString(),
    s.chargeMicros.toString(),
    s.ownerId,
    s.ownerEarningMicros.toString(),
    u.inputTokens,
    u.outputTokens,
    u.cachedInputTokens,
    s.estimated,
    s.endCause,
    m.priceVer,
    m.planId,
    m.api,
    m.model,
    m.agentId,
    m.tier,
    m.tierBps,
    s.officialMicros.toString(),
    s.planBps,
    u.audioSeconds ?? null,
    u.images ?? null,
    u.characters ?? null,
  ];
}

/** One request to settle, with its request record (its `request_records` row as JSON, `recordRowJson`) when it has one. */
export interface SettleItem {
  requestId: string;
  settlement: Settlement;
  record?: string | null;
}

export class Ledger {
  constructor(private readonly pool: pg.Pool) {}

  /** Adds money to a user's wallet (top-up, grant, redemption); idempotent by `txId`. */
  async credit(userId: string, amountMicros: bigint, kind: string, txId: string): Promise<"credited" | "duplicate"> {
    return inTransaction(this.pool, (c) => postCredit(c, userId, amountMicros, kind, txId));
  }

  /** Settles one request held against a lease (see `settleMany`). */
  async settle(
    requestId: string,
    s: Settlement,
    record: string | null = null,
    onRecordsDropped?: (count: number, error: string | null) => void,
  ): Promise<SettleResult> {
    return (await this.settleMany([{ requestId, settlement: s, record }], onRecordsDropped))[0]!;
  }

  /**
   * Settles many requests in one round trip and one set-based statement (`wellspring_settle_batch`), each once:
   * its reservation record is written already settled, its charge taken in full (from its lease up to what it
   * reserved, the rest from the available balance), the owner credited, the journal posted, the wallet's spent
   * total and the daily rollup kept — one write per table for the whole batch — and the request records given with
   * them inserted in the same transaction. Items are judged in the order given, as if settled one after another;
   * callers order them by user and model. Records the database refuses (a key or user gone, no partition for the
   * day) never stop the settlements: they are dropped and reported to `onRecordsDropped`.
   */
  async settleMany(items: readonly SettleItem[], onRecordsDropped?: (count: number, error: string | null) => void): Promise<SettleResult[]> {
    for (const { settlement: s } of items) {
      if (s.chargeMicros < 0n || s.ownerEarningMicros < 0n || s.officialMicros < 0n) throw new RangeError("charge, earning and cost must not be negative");
    }
    if (items.length === 0) return [];
    const n = items.length;
    const cols = Array.from({ length: 24 }, () => new Array<unknown>(n));
    const records: string[] = [];
    for (let i = 0; i < n; i++) {
      const { requestId, settlement: s, record } = items[i]!;
      const row = settlementRow(requestId, s);
      for (let c = 0; c < 24; c++) cols[c]![i] = row[c];
      if (record) records.push(record);
    }
    const r = await this.pool.query<{
      outcome: string;
      charged: string;
      released: string;
      reservation: string | null;
      records_dropped: number;
      records_error: string | null;
    }>(
      `SELECT outcome, charged::text, released::text, reservation, records_dropped, records_error
       FROM wellspring_settle_batch($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::int[], $9::int[],
         $10::int[], $11::bool[], $12::"EndCause"[], $13::int[], $14::text[], $15::text[], $16::text[], $17::text[], $18::"AgentTier"[], $19::int[],
         $20::bigint[], $21::int[], $22::int[], $23::int[], $24::int[], $25::json)
       ORDER BY ord`,
      [...cols, `[${records.join(",")}]`],
    );
    const dropped = r.rows[0]?.records_dropped ?? 0;
    if (dropped > 0) onRecordsDropped?.(dropped, r.rows[0]!.records_error);
    return r.rows.map(settleResult);
  }

  /**
   * Grants (or tops up) a gateway's lease on a user's wallet: at most `wantMicros`, at least `minMicros`, and
   * no more than half the available balance unless `minMicros` needs more. Returns what was granted (0n:
   * the balance does not cover `minMicros`).
   */
  async lease(leaseId: string, userId: string, gatewayId: string, wantMicros: bigint, minMicros: bigint): Promise<bigint> {
    if (minMicros <= 0n || wantMicros < minMicros) throw new RangeError("a lease needs 0 < min ≤ want");
    const r = await this.pool.query<{ granted: string }>("SELECT wellspring_lease($1, $2, $3, $4, $5)::text AS granted", [
      leaseId,
      userId,
      gatewayId,
      wantMicros.toString(),
      minMicros.toString(),
    ]);
    return BigInt(r.rows[0]!.granted);
  }

  /**
   * Returns what a lease still holds to the wallet and closes it, recording how many requests were claimed
   * against it; the amount returned (0n if already closed).
   */
  async releaseLease(leaseId: string, requestsClaimed: number | null): Promise<bigint> {
    const r = await this.pool.query<{ returned: string }>("SELECT wellspring_release_lease($1, $2)::text AS returned", [leaseId, requestsClaimed]);
    return BigInt(r.rows[0]!.returned);
  }

  /**
   * One round trip every few seconds per gateway: the gateway says it is alive (`gateways.last_seen_at`), renews
   * its open leases with the number of requests claimed against each, and learns which of them were closed
   * behind its back (released by a sweep while it could not report). Returns those ids.
   */
  async heartbeat(gatewayId: string, hubId: string, leases: readonly { id: string; requestsClaimed: number }[]): Promise<string[]> {
    const r = await this.pool.query<{ id: string }>(
      `WITH alive AS (
         INSERT INTO gateways (id, hub_id) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), stopped_at = NULL
         RETURNING id
       ), renewed AS (
         UPDATE credit_leases l SET renewed_at = now(), requests_claimed = GREATEST(l.requests_claimed, x.claimed)
         FROM unnest($3::text[], $4::int[]) AS x(id, claimed)
         WHERE l.id = x.id AND l.released = false
         RETURNING l.id
       )
       SELECT id FROM renewed UNION ALL SELECT '' FROM alive`,
      [gatewayId, hubId, leases.map((l) => l.id), leases.map((l) => l.requestsClaimed)],
    );
    const open = new Set(r.rows.map((x) => x.id));
    return leases.filter((l) => !open.has(l.id)).map((l) => l.id);
  }

  /** The gateway stopped in order: others release whatever leases it still holds at once. */
  async gatewayStopped(gatewayId: string): Promise<void> {
    await this.pool.query("UPDATE gateways SET stopped_at = now() WHERE id = $1", [gatewayId]);
  }

  /**
   * Releases the open leases of gateways that are known dead — stopped, or silent for longer than `deadAfterMs`
   * (and, for leases of gateways that never reported, not renewed for as long) — except `selfId`'s.
   * Returns how many were released.
   */
  async sweepDeadGateways(selfId: string, deadAfterMs: number): Promise<number> {
    const r = await this.pool.query<{ id: string }>(
      `SELECT l.id FROM credit_leases l LEFT JOIN gateways g ON g.id = l.gateway_id
       WHERE l.released = false AND l.gateway_id <> $1
         AND (g.stopped_at IS NOT NULL
           OR g.last_seen_at < now() - make_interval(secs => $2::double precision / 1000)
           OR (g.id IS NULL AND l.renewed_at < now() - make_interval(secs => $2::double precision / 1000)))`,
      [selfId, deadAfterMs],
    );
    for (const { id } of r.rows) await this.releaseLease(id, null);
    return r.rows.length;
  }

  /** Gateways whose spool files may be taken over: stopped, silent for `deadAfterMs`, or never seen. */
  async deadGateways(ids: readonly string[], deadAfterMs: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const r = await this.pool.query<{ id: string }>(
      `SELECT x.id FROM unnest($1::text[]) AS x(id) LEFT JOIN gateways g ON g.id = x.id
       WHERE g.id IS NULL OR g.stopped_at IS NOT NULL OR g.last_seen_at < now() - make_interval(secs => $2::double precision / 1000)`,
      [ids, deadAfterMs],
    );
    return r.rows.map((x) => x.id);
  }

  /**
   * Checks every invariant of the ledger; `ok` is false with a list of problems when one fails. Journal sums
   * include archived days (their per-account totals, `wellspring_account_total`); the archived days themselves
   * are checked by `checkArchive` (gateway/src/archive/check.ts).
   */
  async audit(): Promise<AuditReport> {
    const problems: string[] = [];
    const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await this.pool.query<T>(sql, params)).rows;
    const sum = await q<{ s: string | null }>(
      "SELECT (COALESCE((SELECT SUM(amount_micros) FROM journal_entries), 0) + COALESCE((SELECT SUM(amount_micros) FROM journal_archive_totals), 0))::text AS s",
    );
    const journalSumMicros = BigInt(sum[0]!.s ?? "0");
    if (journalSumMicros !== 0n) problems.push(`journal sums to ${journalSumMicros}, not 0`);
    for (const r of await q<{ tx_id: string }>("SELECT tx_id FROM journal_entries GROUP BY tx_id HAVING SUM(amount_micros) <> 0 LIMIT 5")) {
      problems.push(`transaction ${r.tx_id} does not balance`);
    }
    const wallets = await q<{ user_id: string; available: string; reserved: string; journal: string; held: string; overdraft: string }>(`
      SELECT w.user_id, w.available_micros::text AS available, w.reserved_micros::text AS reserved,
        wellspring_account_total('user:' || w.user_id)::text AS journal,
        (COALESCE((SELECT SUM(amount_micros) FROM reservations r WHERE r.user_id = w.user_id AND r.status = 'held'), 0)
          + COALESCE((SELECT SUM(amount_micros) FROM credit_leases l WHERE l.user_id = w.user_id AND NOT l.released), 0))::text AS held,
        COALESCE((SELECT SUM(overdraft_micros) FROM reservations r WHERE r.user_id = w.user_id), 0)::text AS overdraft
      FROM wallets w`);
    for (const w of wallets) {
      const available = BigInt(w.available);
      const reserved = BigInt(w.reserved);
      if (reserved < 0n) problems.push(`wallet ${w.user_id}: reserved is negative`);
      // Only usage beyond reservations (charged in full, flagged) may take a balance below zero.
      if (available < 0n && -available > BigInt(w.overdraft))
        problems.push(`wallet ${w.user_id} is ${-available} below zero, more than its requests' overdraft ${w.overdraft}`);
      if (available + reserved !== BigInt(w.journal)) problems.push(`wallet ${w.user_id}: available + reserved ${available + reserved} ≠ journal ${w.journal}`);
      if (reserved !== BigInt(w.held)) problems.push(`wallet ${w.user_id}: reserved ${reserved} ≠ held reservations and leases ${w.held}`);
    }
    for (const r of await q<{ request_id: string }>(
      "SELECT request_id FROM journal_entries WHERE kind = 'usage' GROUP BY request_id HAVING COUNT(*) > 1 LIMIT 5",
    )) {
      problems.push(`request ${r.request_id} charged more than once`);
    }
    for (const r of await q<{ account: string }>(
      "SELECT account FROM (SELECT DISTINCT account FROM journal_entries WHERE account LIKE 'owner:%' UNION SELECT DISTINCT account FROM journal_archive_totals WHERE account LIKE 'owner:%') o WHERE wellspring_account_total(account) < 0 LIMIT 5",
    )) {
      problems.push(`${r.account} is negative`);
    }
    const pending = (
      await q<{ journal: string; payouts: string }>(`
      SELECT wellspring_account_total('platform:payouts_pending')::text AS journal,
             COALESCE((SELECT SUM(amount_micros) FROM payouts WHERE status = 'requested'), 0)::text AS payouts`)
    )[0]!;
    if (pending.journal !== pending.payouts) problems.push(`payouts pending in the journal ${pending.journal} ≠ requested payouts ${pending.payouts}`);
    for (const r of await q<{ user_id: string }>(`
      SELECT w.user_id FROM wallets w
      WHERE w.spent_micros <> -wellspring_account_total('user:' || w.user_id, 'usage')
         OR w.spent_micros <> COALESCE((SELECT SUM(u.spent_micros) FROM usage_daily u WHERE u.user_id = w.user_id), 0)
      LIMIT 5`)) {
      problems.push(`wallet ${r.user_id}: spent total differs from its journal or its daily rollup`);
    }
    for (const r of await q<{ id: string }>("SELECT id FROM credit_leases WHERE NOT released AND amount_micros <> granted_micros - charged_micros LIMIT 5")) {
      problems.push(`lease ${r.id}: holds other than granted less charged`);
    }
    for (const r of await q<{ id: string }>(`
      SELECT l.id FROM credit_leases l
      WHERE l.charged_micros <> COALESCE((SELECT SUM(COALESCE(r.lease_micros, r.charge_micros)) FROM reservations r WHERE r.lease_id = l.id), 0) AND NOT l.released
      LIMIT 5`)) {
      problems.push(`lease ${r.id}: charged total differs from its requests`);
    }
    // Settlements that were never written: every request a gateway claimed against a lease it has since given
    // back (or that was swept) must have its settled reservation row.
    for (const r of await q<{ id: string; claimed: number; settled: string }>(`
      SELECT l.id, l.requests_claimed AS claimed, (SELECT COUNT(*) FROM reservations r WHERE r.lease_id = l.id)::text AS settled
      FROM credit_leases l
      WHERE l.released AND l.requests_claimed > (SELECT COUNT(*) FROM reservations r WHERE r.lease_id = l.id)
      LIMIT 5`)) {
      problems.push(
        `lease ${r.id}: ${r.claimed} requests were claimed against it, ${r.settled} settled — ${r.claimed - Number(r.settled)} settlements were never written`,
      );
    }
    // Every charge is the full cost of the usage it records, at the price version it was priced with: the
    // official cost recomputed from the recorded units, the owner's share of it, and (multiplier plans) the
    // user's price of it. A charge capped below its usage, or an owner paid less than the tier, fails here.
    const recomputed = await q<{
      request_id: string;
      official: string;
      expected_official: string | null;
      earning: string;
      expected_earning: string;
      charge: string;
      expected_charge: string | null;
    }>(`
      WITH c AS (
        SELECT r.request_id, r.official_micros, r.earning_micros, r.charge_micros, r.owner_id, r.tier_bps, r.plan_bps,
          (SELECT CASE WHEN p.ver IS NULL THEN NULL ELSE
             (GREATEST(COALESCE(r.input_tokens, 0) - LEAST(COALESCE(r.cached_input_tokens, 0), COALESCE(r.input_tokens, 0)), 0)::bigint * (((p.input_micros_per_mtok) * COALESCE(d.price_bps, 10000) + 9999) / 10000)
               + LEAST(COALESCE(r.cached_input_tokens, 0), COALESCE(r.input_tokens, 0))::bigint * (((p.cached_input_micros_per_mtok) * COALESCE(d.price_bps, 10000) + 9999) / 10000)
               + COALESCE(r.output_tokens, 0)::bigint * (((p.output_micros_per_mtok) * COALESCE(d.price_bps, 10000) + 9999) / 10000)
               + COALESCE(r.characters, 0)::bigint * (((p.character_micros_per_m) * COALESCE(d.price_bps, 10000) + 9999) / 10000) + 999999) / 1000000
             + COALESCE(r.audio_seconds, 0) * (((p.audio_second_micros) * COALESCE(d.price_bps, 10000) + 9999) / 10000) + COALESCE(r.images, 0) * (((p.image_micros) * COALESCE(d.price_bps, 10000) + 9999) / 10000) END
           FROM model_prices p
           WHERE p.ver = r.price_ver AND p.model = r.model AND p.provider IN (r.api, CASE WHEN r.api = 'openai' THEN 'azure' END)
           ORDER BY (p.provider = r.api) DESC LIMIT 1) AS expected_official
        -- A deferred settlement's share of the price table (a batch: BATCH_PRICE_BPS), each price rounded up as scaledPrice does.
        FROM reservations r LEFT JOIN deferred_settlements d ON d.request_id = r.request_id
        WHERE r.status = 'settled' AND r.official_micros IS NOT NULL
      )
      SELECT request_id, official_micros::text AS official, expected_official::text,
        earning_micros::text AS earning,
        (CASE WHEN owner_id IS NULL OR tier_bps IS NULL THEN 0 ELSE (official_micros * tier_bps) / 10000 END)::text AS expected_earning,
        charge_micros::text AS charge,
        (CASE WHEN plan_bps IS NULL THEN NULL ELSE (official_micros * plan_bps + 9999) / 10000 END)::text AS expected_charge
      FROM c`);
    let mismatched = 0;
    for (const r of recomputed) {
      const wrong =
        r.expected_official === null
          ? "no official price for its model and version"
          : r.official !== r.expected_official
            ? `official cost ${r.official} ≠ ${r.expected_official} for its usage`
            : r.earning !== r.expected_earning
              ? `owner earned ${r.earning} ≠ ${r.expected_earning} (official × tier)`
              : r.expected_charge !== null && r.charge !== r.expected_charge
                ? `charged ${r.charge} ≠ ${r.expected_charge} for its usage`
                : null;
      if (wrong && ++mismatched <= 5) problems.push(`request ${r.request_id}: ${wrong}`);
    }
    if (mismatched > 5) problems.push(`… and ${mismatched - 5} more requests whose charge does not match their usage`);
    return { ok: problems.length === 0, problems, journalSumMicros, walletsChecked: wallets.length, chargesChecked: recomputed.length };
  }
}
