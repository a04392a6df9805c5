/**
 * Settlements leave the request path (the response is already sent) and are written in batches: whatever
 * settles within the batch window (or SETTLE_BATCH_ENTRIES_MAX of them) goes to PostgreSQL in one set-based
 * statement with the requests' records (`Ledger.settleMany`), ordered by user and model so concurrent batches take
 * wallet and rollup locks in the same order. The window adapts to the rate: it starts at SETTLE_BATCH_WINDOW_MS,
 * doubles after each window that gathered more than one settlement (up to SETTLE_BATCH_WINDOW_MAX_MS) and falls back
 * to SETTLE_BATCH_WINDOW_MS after a window that gathered one or a quiet spell longer than the window — a statement's
 * fixed cost is most of PostgreSQL's work at a few settlements per statement (docs/performance.md, "Issue 17 —
 * PostgreSQL per request"), while a settlement after a quiet spell waits no longer than it did with a fixed window. A batch that fails for a reason other than the database being unreachable (a deadlock) is retried one
 * settlement at a time. A settlement that cannot be written now goes to the durable spool and is replayed when
 * the database is back; settling is idempotent by request id, so nothing is charged twice.
 */
import type { Logger } from "../log.ts";
import { isUnavailable, type LedgerHealth } from "./health.ts";
import type { Ledger, SettleResult, Settlement } from "./ledger.ts";
import type { Spool, SpoolCodec } from "./spool.ts";
import { observeSettlementBatch } from "../observability/metrics.ts";

/** How long a settlement may wait for others to share its round trip when settlements are few, ms. */
export const SETTLE_BATCH_WINDOW_MS = 2;
/** The longest the window grows to while settlements keep coming, ms: the most a settlement waits for its statement. */
export const SETTLE_BATCH_WINDOW_MAX_MS = 32;
/** Settlements in one statement at most. */
export const SETTLE_BATCH_ENTRIES_MAX = 128;
/** How often spooled settlements are tried again while the spool is not empty, ms. */
export const SPOOL_REPLAY_INTERVAL_MS = 1_000;

/** What a settlement's promise resolves with: written now, or taken by the spool to be written later. */
export type SettleOutcome = SettleResult | { outcome: "spooled" };

export interface SpooledSettlement {
  requestId: string;
  userId: string;
  model: string;
  settlement: Settlement;
  /** The request's record (its `request_records` row as JSON), written in the settlement's statement; null: none. */
  record: string | null;
}

interface Pending extends SpooledSettlement {
  order: string;
  done: (r: SettleOutcome) => void;
  fail: (e: unknown) => void;
}

const order = (s: SpooledSettlement) => `${s.userId}\u0000${s.model}\u0000${s.requestId}`;

export class SettlementBatcher {
  #queue: Pending[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** The current batch window, ms (adapted after each window: see the module's comment). */
  #windowMs = SETTLE_BATCH_WINDOW_MS;
  /** When the last batch was taken from the queue (Date.now()). */
  #windowClosedAt = -Infinity;
  #inFlight = new Set<Promise<void>>();
  #replaying: Promise<void> | null = null;
  readonly #replayTimer: ReturnType<typeof setInterval> | null;

  /**
   * `adoptAfterMs`: spool files of gateways silent this long (by the ledger's clock) are taken over and
   * replayed; null never takes over other files.
   */
  constructor(
    private readonly ledger: Ledger,
    private readonly log: Logger,
    private readonly health: LedgerHealth,
    private readonly spool: Spool<SpooledSettlement> | null = null,
    private readonly adoptAfterMs: number | null = null,
  ) {
    this.#replayTimer = spool ? setInterval(() => void this.replay(), SPOOL_REPLAY_INTERVAL_MS) : null;
    this.#replayTimer?.unref();
  }

  /** Request records the database refused beside their settlements (written, the records lost), as before: logged. */
  readonly #recordsDropped = (count: number, error: string | null): void => this.log.error("records.write_failed", { count, error });

  /** Settlements waiting in the spool. */
  get spooled(): number {
    return this.spool?.depth ?? 0;
  }

  /**
   * Queues a settlement, with the request's record when it has one; resolves once both are written (or durably
   * spooled). `userId` and `model` order the batch.
   */
  settle(userId: string, model: string, requestId: string, settlement: Settlement, record: string | null = null): Promise<SettleOutcome> {
    return new Promise((done, fail) => {
      const p: Pending = { requestId, userId, model, settlement, record, order: "", done, fail };
      p.order = order(p);
      this.#queue.push(p);
      if (this.#queue.length >= SETTLE_BATCH_ENTRIES_MAX) this.#flush();
      else if (this.#timer === null) {
        // A quiet spell longer than the window: settlements are few again.
        if (Date.now() - this.#windowClosedAt > this.#windowMs) this.#windowMs = SETTLE_BATCH_WINDOW_MS;
        this.#timer = setTimeout(() => this.#closeWindow(), this.#windowMs);
      }
    });
  }

  /** The batch window ends: its settlements are written, and the next window is sized by how many it gathered. */
  #closeWindow(): void {
    this.#timer = null;
    this.#windowMs = this.#queue.length > 1 ? Math.min(this.#windowMs * 2, SETTLE_BATCH_WINDOW_MAX_MS) : SETTLE_BATCH_WINDOW_MS;
    this.#flush();
  }

  /** The window currently used, ms (for tests and metrics). */
  get windowMs(): number {
    return this.#windowMs;
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#windowClosedAt = Date.now();
    const batch = this.#queue.splice(0, SETTLE_BATCH_ENTRIES_MAX).sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
    if (this.#queue.length) this.#timer = setTimeout(() => this.#flush(), 0);
    if (batch.length === 0) return;
    const work = this.#write(batch).finally(() => this.#inFlight.delete(work));
    this.#inFlight.add(work);
  }

  async #write(batch: Pending[]): Promise<void> {
    // While the ledger is known to be unreachable (and older settlements wait), go straight to the spool:
    // a request must not wait for a connection attempt, and settlements stay in their order.
    if (this.spool && (!this.health.up || this.spool.depth > 0)) return this.#toSpool(batch, null);
    try {
      const results = await this.ledger.settleMany(batch, this.#recordsDropped);
      observeSettlementBatch(batch.length);
      this.health.ok();
      batch.forEach((p, i) => p.done(results[i]!));
      return;
    } catch (error) {
      if (isUnavailable(error)) {
        this.health.failed(error);
        return this.#toSpool(batch, error);
      }
      this.log.warn("billing.settle_batch_failed", { count: batch.length, error, retry: "one by one" });
    }
    for (const p of batch) {
      try {
        p.done(await this.ledger.settle(p.requestId, p.settlement, p.record, this.#recordsDropped));
      } catch (error) {
        if (isUnavailable(error)) this.health.failed(error);
        await this.#toSpool([p], error);
      }
    }
  }

  async #toSpool(batch: Pending[], cause: unknown): Promise<void> {
    if (!this.spool) {
      for (const p of batch) p.fail(cause ?? new Error("the ledger is unreachable and there is no spool"));
      return;
    }
    try {
      await this.spool.append(batch.map(({ requestId, userId, model, settlement, record }) => ({ requestId, userId, model, settlement, record })));
      for (const p of batch) p.done({ outcome: "spooled" });
      this.log.warn("billing.settlements_spooled", { count: batch.length, depth: this.spool.depth, cause: cause instanceof Error ? cause.message : undefined });
    } catch (error) {
      for (const p of batch) p.fail(error);
    }
  }

  /**
   * Writes spooled settlements to the database (oldest first, in batches) and removes what was written. Runs on
   * a timer while the spool is not empty; also takes over the spools of gateways the ledger says are dead.
   */
  replay(): Promise<void> {
    this.#replaying ??= this.#replay().finally(() => {
      this.#replaying = null;
    });
    return this.#replaying;
  }

  async #replay(): Promise<void> {
    const spool = this.spool;
    if (!spool) return;
    try {
      if (this.adoptAfterMs !== null && this.health.up) {
        const others = await spool.otherFiles();
        if (others.length) for (const id of await this.ledger.deadGateways(others, this.adoptAfterMs)) await spool.adopt(id);
      }
      while (spool.depth > 0) {
        const batch = spool.items().slice(0, SETTLE_BATCH_ENTRIES_MAX);
        const sorted = [...batch].sort((a, b) => (order(a) < order(b) ? -1 : 1));
        const results = await this.ledger.settleMany(sorted, this.#recordsDropped);
        this.health.ok();
        const written = new Set<SpooledSettlement>();
        sorted.forEach((s, i) => {
          const r = results[i]!;
          if (r.outcome === "unknown_request")
            this.log.error("billing.spooled_settlement_unknown_lease", {
              requestId: s.requestId,
              leaseId: s.settlement.lease.leaseId,
              note: "kept in the spool",
            });
          else written.add(s);
        });
        if (written.size === 0) return; // nothing can move: stop until the next tick
        const removed = await spool.remove((s) => written.has(s));
        this.log.info("billing.spool_replayed", { written: removed, left: spool.depth });
      }
    } catch (error) {
      if (isUnavailable(error)) this.health.failed(error);
      else this.log.warn("billing.spool_replay_failed", { error });
    }
  }

  /** Writes everything queued (on shutdown); spooled entries stay spooled if the database is still away. */
  async drain(): Promise<void> {
    while (this.#queue.length || this.#inFlight.size) {
      if (this.#queue.length) this.#flush();
      await Promise.all([...this.#inFlight]);
    }
    if (this.health.up) await this.replay();
    if (this.#replayTimer) clearInterval(this.#replayTimer);
    await this.#replaying;
  }
}

const big = (v: unknown): bigint => {
  if (typeof v !== "string" || !/^-?\d{1,20}$/.test(v)) throw new TypeError("not an integer string");
  return BigInt(v);
};

/** Settlements as spool lines: bigints as decimal strings, everything else as is. */
export const SETTLEMENT_CODEC: SpoolCodec<SpooledSettlement> = {
  encode: (s) => ({
    requestId: s.requestId,
    userId: s.userId,
    model: s.model,
    settlement: {
      ...s.settlement,
      chargeMicros: s.settlement.chargeMicros.toString(),
      ownerEarningMicros: s.settlement.ownerEarningMicros.toString(),
      officialMicros: s.settlement.officialMicros.toString(),
      lease: { ...s.settlement.lease, reservedMicros: s.settlement.lease.reservedMicros.toString() },
    },
    record: s.record,
  }),
  decode: (raw) => {
    const r = raw as {
      requestId?: unknown;
      userId?: unknown;
      model?: unknown;
      settlement?: Record<string, unknown> & { lease?: Record<string, unknown> };
      record?: unknown;
    };
    if (typeof r.requestId !== "string" || typeof r.userId !== "string" || typeof r.model !== "string" || !r.settlement?.lease) return null;
    const s = r.settlement;
    return {
      requestId: r.requestId,
      userId: r.userId,
      model: r.model,
      settlement: {
        ...(s as unknown as Settlement),
        chargeMicros: big(s.chargeMicros),
        ownerEarningMicros: big(s.ownerEarningMicros),
        officialMicros: big(s.officialMicros),
        lease: { ...(s.lease as unknown as Settlement["lease"]), reservedMicros: big(s.lease!.reservedMicros) },
      },
      // Spool lines written before records went with settlements have none (their records were written apart).
      record: typeof r.record === "string" ? r.record : null,
    };
  },
};
