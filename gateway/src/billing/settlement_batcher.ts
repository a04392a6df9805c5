/**
 * Settlements leave the request path (the response is already sent) and are written in small batches:
 * whatever settles within SETTLE_BATCH_WINDOW_MS (or SETTLE_BATCH_ENTRIES_MAX of them) goes to PostgreSQL
 * in one statement, ordered by user and model so concurrent batches take wallet and rollup locks in the same
 * order. A batch that fails (a deadlock, a lost connection) is retried one settlement at a time; settling is
 * idempotent, so nothing is charged twice.
 */
import type { Logger } from "../log.ts";
import type { Ledger, SettleResult, Settlement } from "./ledger.ts";

/** How long a settlement may wait for others to share its round trip, ms. */
export const SETTLE_BATCH_WINDOW_MS = 2;
/** Settlements in one statement at most. */
export const SETTLE_BATCH_ENTRIES_MAX = 128;

interface Pending {
  requestId: string;
  order: string;
  settlement: Settlement;
  done: (r: SettleResult) => void;
  fail: (e: unknown) => void;
}

export class SettlementBatcher {
  #queue: Pending[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #inFlight = new Set<Promise<void>>();

  constructor(private readonly ledger: Ledger, private readonly log: Logger) {}

  /** Queues a settlement; resolves once it is written. `userId` and `model` order the batch. */
  settle(userId: string, model: string, requestId: string, settlement: Settlement): Promise<SettleResult> {
    return new Promise((done, fail) => {
      this.#queue.push({ requestId, order: `${userId}\u0000${model}\u0000${requestId}`, settlement, done, fail });
      if (this.#queue.length >= SETTLE_BATCH_ENTRIES_MAX) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), SETTLE_BATCH_WINDOW_MS);
    });
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const batch = this.#queue.splice(0, SETTLE_BATCH_ENTRIES_MAX).sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
    if (this.#queue.length) this.#timer = setTimeout(() => this.#flush(), 0);
    if (batch.length === 0) return;
    const work = this.#write(batch).finally(() => this.#inFlight.delete(work));
    this.#inFlight.add(work);
  }

  async #write(batch: Pending[]): Promise<void> {
    try {
      const results = await this.ledger.settleMany(batch.map((p) => ({ requestId: p.requestId, settlement: p.settlement })));
      batch.forEach((p, i) => p.done(results[i]!));
    } catch (error) {
      this.log.warn("billing.settle_batch_failed", { count: batch.length, error, retry: "one by one" });
      for (const p of batch) {
        await this.ledger.settle(p.requestId, p.settlement).then(p.done, p.fail);
      }
    }
  }

  /** Writes everything queued (on shutdown). */
  async drain(): Promise<void> {
    while (this.#queue.length || this.#inFlight.size) {
      if (this.#queue.length) this.#flush();
      await Promise.all([...this.#inFlight]);
    }
  }
}
