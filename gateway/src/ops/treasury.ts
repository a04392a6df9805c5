/**
 * Money in and out of the system, each operation one transaction with its journal entries and an audit
 * event: admin credit grants, redemption codes (batches of single-use codes, claimed race-free), and owner
 * payouts (request → paid or cancelled). A payment provider (card top-ups) plugs in through
 * `PaymentProvider`: it confirms a payment once and the treasury credits it, idempotent by the payment id.
 *
 * Accounts (see ledger.ts): money enters from `platform:funding` into `user:<id>`; settlements move it to
 * `owner:<id>` and `platform:margin`; a payout request moves it from `owner:<id>` to
 * `platform:payouts_pending`, and payment sends it back out to `platform:funding`.
 */
import { createHash, randomBytes } from "node:crypto";
import type pg from "pg";
import { newId } from "@wellspring/db/core";
import { ACCOUNT_FUNDING, inTransaction, ownerAccount, postCredit } from "../billing/ledger.ts";
import { agentProbationMs } from "../risk/probation.ts";
import { recordLinks, recordSignal, REDEMPTION_BATCH_LINK_CODES_MAX, viaPg } from "../risk/account_links.ts";

export const ACCOUNT_PAYOUTS_PENDING = "platform:payouts_pending";
/** Codes in one redemption batch at most. */
export const REDEMPTION_BATCH_CODES_MAX = 10_000;
/** Characters of a redemption code after its prefix (base32: 5 bits each, 80 bits). */
const CODE_CHARS = 16;
const CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const CODE_PATTERN = /^WSR(-[A-Z2-9]{4}){4}$/;

/** Who did something: a user id, or `cli:<unix user>` / `system` for operator tools. */
export type Actor = string;

export async function audit(c: pg.PoolClient | pg.Pool, actor: Actor, action: string, subject: string, detail: Record<string, unknown>): Promise<void> {
  await c.query("INSERT INTO audit_events (actor, action, subject, detail) VALUES ($1, $2, $3, $4)", [
    actor,
    action,
    subject,
    JSON.stringify(detail, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)),
  ]);
}

function newCode(): string {
  const bytes = randomBytes(CODE_CHARS);
  let body = "";
  for (const b of bytes) body += CODE_ALPHABET[b & 31];
  return `WSR-${body.slice(0, 4)}-${body.slice(4, 8)}-${body.slice(8, 12)}-${body.slice(12, 16)}`;
}

const hashCode = (code: string) => createHash("sha256").update(code).digest("hex");

export type RedeemResult = { outcome: "redeemed"; amountMicros: bigint } | { outcome: "invalid" | "already_redeemed" | "expired" };

export type PayoutResult = { outcome: "requested"; payoutId: string } | { outcome: "insufficient_earnings"; availableMicros: bigint };

export interface EarningsDay {
  /** UTC date, YYYY-MM-DD. */
  day: string;
  earningMicros: bigint;
  requests: number;
}

/** A payment provider confirms money received; the treasury credits it once per payment id. */
export interface PaymentProvider {
  readonly name: string;
  /** Checks a payment with the provider; null when it is unknown or not (yet) paid. */
  confirm(paymentId: string): Promise<{ userId: string; amountMicros: bigint } | null>;
}

export interface TreasuryOptions {
  /** New agents' probation (risk/probation.ts), ms; default from AGENT_PROBATION_HOURS. */
  probationMs?: number;
  /** The clock probation is judged by. */
  now?: () => Date;
}

export class Treasury {
  readonly #probationMs: number;
  readonly #now: () => Date;

  constructor(
    private readonly pool: pg.Pool,
    opts: TreasuryOptions = {},
  ) {
    this.#probationMs = opts.probationMs ?? agentProbationMs();
    this.#now = opts.now ?? (() => new Date());
  }

  /**
   * An owner's earnings still pending because the agent that earned them is on probation (and not already held
   * for review, which counts once, as held): per such agent, what it earned and when its probation ends.
   */
  async probationPending(
    ownerId: string,
    c: Pick<pg.Pool, "query"> = this.pool,
  ): Promise<{ totalMicros: bigint; agents: { agentId: string; amountMicros: bigint; endsAt: Date }[] }> {
    if (this.#probationMs <= 0) return { totalMicros: 0n, agents: [] };
    const since = new Date(this.#now().getTime() - this.#probationMs);
    const r = await c.query<{ agent_id: string; created_at: Date; amount: string }>(
      `SELECT a.id AS agent_id, a.created_at, COALESCE(SUM(r.earning_micros), 0)::text AS amount
       FROM agents a JOIN reservations r ON r.agent_id = a.id AND r.owner_id = $1 AND r.status = 'settled'
       WHERE a.owner_id = $1 AND a.created_at > $2
         AND NOT EXISTS (SELECT 1 FROM earning_holds h WHERE h.request_id = r.request_id AND h.status = 'held')
       GROUP BY a.id, a.created_at ORDER BY a.created_at`,
      [ownerId, since],
    );
    const agents = r.rows
      .map((row) => ({ agentId: row.agent_id, amountMicros: BigInt(row.amount), endsAt: new Date(row.created_at.getTime() + this.#probationMs) }))
      .filter((a) => a.amountMicros > 0n);
    return { totalMicros: agents.reduce((n, a) => n + a.amountMicros, 0n), agents };
  }

  /** An admin adds credit to a user's wallet; `grantId` makes a retry harmless. */
  async grant(actor: Actor, userId: string, amountMicros: bigint, reason: string, grantId = newId("grt")): Promise<"credited" | "duplicate"> {
    if (!reason.trim()) throw new Error("A grant needs a reason");
    return inTransaction(this.pool, async (c) => {
      const result = await postCredit(c, userId, amountMicros, "grant", `grant:${grantId}`);
      if (result === "credited") await audit(c, actor, "credit.grant", `user:${userId}`, { grantId, amountMicros, reason });
      return result;
    });
  }

  /** Credits a payment the provider confirms; idempotent by the provider's payment id. */
  async creditPayment(provider: PaymentProvider, paymentId: string): Promise<"credited" | "duplicate" | "unconfirmed"> {
    const paid = await provider.confirm(paymentId);
    if (!paid) return "unconfirmed";
    return inTransaction(this.pool, async (c) => {
      const result = await postCredit(c, paid.userId, paid.amountMicros, "topup", `payment:${provider.name}:${paymentId}`);
      if (result === "credited")
        await audit(c, `payment:${provider.name}`, "credit.payment", `user:${paid.userId}`, { paymentId, amountMicros: paid.amountMicros });
      return result;
    });
  }

  /** Makes `count` single-use codes worth `amountMicros` each. The codes are returned once and stored hashed. */
  async createRedemptionBatch(
    actor: Actor,
    opts: { amountMicros: bigint; count: number; note?: string; expiresAt?: Date | null },
  ): Promise<{ batchId: string; codes: string[] }> {
    if (opts.amountMicros <= 0n) throw new RangeError("A code must be worth a positive amount");
    if (!Number.isSafeInteger(opts.count) || opts.count < 1 || opts.count > REDEMPTION_BATCH_CODES_MAX) {
      throw new RangeError(`A batch holds 1 to ${REDEMPTION_BATCH_CODES_MAX} codes`);
    }
    const batchId = newId("rdb");
    const codes = Array.from({ length: opts.count }, newCode);
    await inTransaction(this.pool, async (c) => {
      await c.query("INSERT INTO redemption_batches (id, amount_micros, code_count, note, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6)", [
        batchId,
        opts.amountMicros.toString(),
        opts.count,
        opts.note ?? null,
        actor,
        opts.expiresAt ?? null,
      ]);
      await c.query("INSERT INTO redemption_codes (id, batch_id, code_hash) SELECT unnest($1::text[]), $2, unnest($3::text[])", [
        codes.map(() => newId("rdc")),
        batchId,
        codes.map(hashCode),
      ]);
      await audit(c, actor, "redemption.batch_created", `batch:${batchId}`, {
        amountMicros: opts.amountMicros,
        count: opts.count,
        note: opts.note ?? null,
        expiresAt: opts.expiresAt ?? null,
      });
    });
    return { batchId, codes };
  }

  /** Redeems a code into a user's wallet. Single use: of any number of concurrent attempts, one wins. */
  async redeem(userId: string, code: string): Promise<RedeemResult> {
    const normalised = code.trim().toUpperCase();
    if (!CODE_PATTERN.test(normalised)) return { outcome: "invalid" };
    return inTransaction(this.pool, async (c) => {
      const found = await c.query<{
        id: string;
        redeemed_at: Date | null;
        amount: string;
        expired: boolean;
        batch_id: string;
        code_count: number;
        created_by: string;
      }>(
        `SELECT rc.id, rc.redeemed_at, rb.amount_micros::text AS amount, (rb.expires_at IS NOT NULL AND rb.expires_at <= now()) AS expired,
                rb.id AS batch_id, rb.code_count, rb.created_by
         FROM redemption_codes rc JOIN redemption_batches rb ON rb.id = rc.batch_id WHERE rc.code_hash = $1`,
        [hashCode(normalised)],
      );
      const row = found.rows[0];
      if (!row) return { outcome: "invalid" as const };
      if (row.expired) return { outcome: "expired" as const };
      // The claim: one conditional UPDATE; a concurrent redeemer finds it taken.
      const claimed = await c.query("UPDATE redemption_codes SET redeemed_by = $2, redeemed_at = now() WHERE id = $1 AND redeemed_at IS NULL", [
        row.id,
        userId,
      ]);
      if (claimed.rowCount === 0) return { outcome: "already_redeemed" as const };
      const amountMicros = BigInt(row.amount);
      await postCredit(c, userId, amountMicros, "redemption", `redeem:${row.id}`);
      await audit(c, `user:${userId}`, "redemption.redeemed", `user:${userId}`, { codeId: row.id, amountMicros });
      await linkRedemption(c, userId, row);
      return { outcome: "redeemed" as const, amountMicros };
    });
  }

  /** An owner's earnings not yet requested for payout (archived journal days included). */
  async ownerBalance(ownerId: string): Promise<bigint> {
    const r = await this.pool.query<{ s: string }>("SELECT wellspring_account_total($1)::text AS s", [ownerAccount(ownerId)]);
    return BigInt(r.rows[0]!.s);
  }

  /** Earnings per UTC day (settled charges), newest first. */
  async ownerEarningsByDay(ownerId: string, days = 30): Promise<EarningsDay[]> {
    const r = await this.pool.query<{ day: string; earning: string; requests: string }>(
      `SELECT to_char(date_trunc('day', settled_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day,
              SUM(earning_micros)::text AS earning, COUNT(*)::text AS requests
       FROM reservations
       WHERE owner_id = $1 AND status = 'settled' AND settled_at >= (now() AT TIME ZONE 'UTC')::date - ($2::int - 1)
       GROUP BY 1 ORDER BY 1 DESC`,
      [ownerId, days],
    );
    return r.rows.map((row) => ({ day: row.day, earningMicros: BigInt(row.earning), requests: Number(row.requests) }));
  }

  /** What the platform paid an owner for quality canaries in the last `days` days (journal kind `canary`). */
  async ownerCanaryPay(ownerId: string, days = 30): Promise<{ micros: bigint; canaries: number }> {
    const r = await this.pool.query<{ micros: string; canaries: string }>(
      `SELECT COALESCE(SUM(amount_micros), 0)::text AS micros, COUNT(*)::text AS canaries FROM journal_entries
       WHERE account = $1 AND kind = 'canary' AND created_at >= (now() AT TIME ZONE 'UTC')::date - ($2::int - 1)`,
      [ownerAccount(ownerId), days],
    );
    return { micros: BigInt(r.rows[0]!.micros), canaries: Number(r.rows[0]!.canaries) };
  }

  /** An owner asks to be paid `amountMicros` of their earnings; the amount is set aside at once. */
  async requestPayout(ownerId: string, amountMicros: bigint): Promise<PayoutResult> {
    if (amountMicros <= 0n) throw new RangeError("A payout must be a positive amount");
    return inTransaction(this.pool, async (c) => {
      // One payout request per owner at a time, so two cannot both pass the balance check.
      await c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [ownerAccount(ownerId)]);
      const r = await c.query<{ s: string }>(
        "SELECT (wellspring_account_total($1) - COALESCE((SELECT SUM(amount_micros) FROM earning_holds WHERE owner_id = $2 AND status = 'held'), 0))::text AS s",
        [ownerAccount(ownerId), ownerId],
      );
      const pending = (await this.probationPending(ownerId, c)).totalMicros;
      const afterHolds = BigInt(r.rows[0]!.s);
      const availableMicros = afterHolds - pending > 0n ? afterHolds - pending : 0n;
      if (availableMicros < amountMicros) return { outcome: "insufficient_earnings" as const, availableMicros };
      const payoutId = newId("pay");
      await c.query("INSERT INTO payouts (id, owner_id, amount_micros) VALUES ($1, $2, $3)", [payoutId, ownerId, amountMicros.toString()]);
      await c.query("INSERT INTO journal_entries (tx_id, account, amount_micros, kind) VALUES ($1, $2, $3, 'payout_request'), ($1, $4, $5, 'payout_request')", [
        `payout:${payoutId}:requested`,
        ownerAccount(ownerId),
        (-amountMicros).toString(),
        ACCOUNT_PAYOUTS_PENDING,
        amountMicros.toString(),
      ]);
      await audit(c, `user:${ownerId}`, "payout.requested", `payout:${payoutId}`, { ownerId, amountMicros });
      return { outcome: "requested" as const, payoutId };
    });
  }

  /** An admin marks a requested payout paid (money leaves) or cancelled (money returns to the owner). Once. */
  async decidePayout(actor: Actor, payoutId: string, decision: "paid" | "cancelled", reference?: string): Promise<"done" | "not_pending"> {
    if (decision === "paid" && !reference?.trim()) throw new Error("Marking a payout paid needs the payment reference");
    return inTransaction(this.pool, async (c) => {
      const r = await c.query<{ owner_id: string; amount: string }>(
        `UPDATE payouts SET status = $2, decided_at = now(), decided_by = $3, reference = $4
         WHERE id = $1 AND status = 'requested' RETURNING owner_id, amount_micros::text AS amount`,
        [payoutId, decision, actor, reference ?? null],
      );
      const row = r.rows[0];
      if (!row) return "not_pending" as const;
      const to = decision === "paid" ? ACCOUNT_FUNDING : ownerAccount(row.owner_id);
      await c.query("INSERT INTO journal_entries (tx_id, account, amount_micros, kind) VALUES ($1, $2, $3, $5), ($1, $4, $6, $5)", [
        `payout:${payoutId}:${decision}`,
        ACCOUNT_PAYOUTS_PENDING,
        `-${row.amount}`,
        to,
        `payout_${decision}`,
        row.amount,
      ]);
      await audit(c, actor, `payout.${decision}`, `payout:${payoutId}`, { ownerId: row.owner_id, amountMicros: row.amount, reference: reference ?? null });
      return "done" as const;
    });
  }
}

/**
 * A redemption links accounts (risk/account_links.ts): the redeemer with the batch's creator when a portal user
 * made it, and with the other redeemers of the batch — unless the batch is a promotion (more than
 * REDEMPTION_BATCH_LINK_CODES_MAX codes).
 */
async function linkRedemption(c: pg.PoolClient, userId: string, batch: { batch_id: string; code_count: number; created_by: string }): Promise<void> {
  if (batch.code_count > REDEMPTION_BATCH_LINK_CODES_MAX) return;
  const run = viaPg(c);
  await recordSignal(run, { userId, kind: "redemption_batch", valueKey: batch.batch_id });
  if (batch.created_by.startsWith("user:")) await recordLinks(run, userId, [batch.created_by.slice("user:".length)], "redemption_batch");
}
