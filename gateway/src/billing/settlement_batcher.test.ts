import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../log.ts";
import { LedgerHealth } from "./health.ts";
import type { Ledger, SettleItem, SettleResult } from "./ledger.ts";
import { SETTLE_BATCH_ENTRIES_MAX, SETTLE_BATCH_WINDOW_MAX_MS, SETTLE_BATCH_WINDOW_MS, SettlementBatcher } from "./settlement_batcher.ts";
import { testMeta } from "./testing/settlements.ts";

const log = createLogger({ proc: "test" }, "error");

/** A ledger that records each statement's batch and when it was sent; every settlement settles. */
function fakeLedger() {
  const statements: { at: number; size: number }[] = [];
  const ledger = {
    settleMany(items: readonly SettleItem[]): Promise<SettleResult[]> {
      statements.push({ at: Date.now(), size: items.length });
      return Promise.resolve(items.map(() => ({ outcome: "settled", chargedMicros: 1n, releasedMicros: 0n, reservation: "{}" }) as const));
    },
  };
  return { ledger: ledger as unknown as Ledger, statements };
}

let n = 0;
/** Queues one settlement and notes when it was queued and when its promise resolved. */
function settle(b: SettlementBatcher, waits: number[]): Promise<void> {
  const queuedAt = Date.now();
  const requestId = `req_${++n}`;
  return b
    .settle("usr_1", "gpt-4o-mini", requestId, {
      chargeMicros: 1n,
      ownerId: null,
      ownerEarningMicros: 0n,
      officialMicros: 1n,
      planBps: 10_000,
      usage: { inputTokens: 1, outputTokens: 1, cachedInputTokens: 0 },
      estimated: false,
      endCause: "completed",
      lease: { leaseId: "lse_1", userId: "usr_1", reservedMicros: 1n, meta: testMeta() },
    })
    .then(() => void waits.push(Date.now() - queuedAt));
}

describe("settlement batch window", () => {
  beforeEach(() => vi.useFakeTimers({ now: 0 }));
  afterEach(() => vi.useRealTimers());

  it("writes a lone settlement after the base window, as a fixed window did", async () => {
    const { ledger, statements } = fakeLedger();
    const b = new SettlementBatcher(ledger, log, new LedgerHealth(log));
    const waits: number[] = [];
    const done = settle(b, waits);
    await vi.advanceTimersByTimeAsync(SETTLE_BATCH_WINDOW_MS);
    await done;
    expect(statements).toEqual([{ at: SETTLE_BATCH_WINDOW_MS, size: 1 }]);
    expect(waits).toEqual([SETTLE_BATCH_WINDOW_MS]);
    expect(b.windowMs).toBe(SETTLE_BATCH_WINDOW_MS);
  });

  it("grows the window under steady traffic (fewer, larger statements), never holding one past the maximum, and shrinks it after a quiet spell", async () => {
    const { ledger, statements } = fakeLedger();
    const b = new SettlementBatcher(ledger, log, new LedgerHealth(log));
    const waits: number[] = [];
    const pending: Promise<void>[] = [];
    // One settlement a millisecond for a second (1,000/s), as at concurrency 32 in bench:hop.
    for (let ms = 0; ms < 1000; ms++) {
      pending.push(settle(b, waits));
      await vi.advanceTimersByTimeAsync(1);
    }
    await vi.advanceTimersByTimeAsync(SETTLE_BATCH_WINDOW_MAX_MS);
    await Promise.all(pending);
    expect(waits).toHaveLength(1000);
    expect(Math.max(...waits)).toBeLessThanOrEqual(SETTLE_BATCH_WINDOW_MAX_MS);
    expect(statements.reduce((s, x) => s + x.size, 0)).toBe(1000);
    // A fixed 2 ms window would have sent ~500 statements of two; the grown window sends one per 32 ms.
    expect(statements.length).toBeLessThan(40);
    expect(Math.max(...statements.map((s) => s.size))).toBe(SETTLE_BATCH_WINDOW_MAX_MS);

    // After a quiet spell a lone settlement waits the base window again.
    await vi.advanceTimersByTimeAsync(SETTLE_BATCH_WINDOW_MAX_MS + 1);
    const lone: number[] = [];
    const done = settle(b, lone);
    await vi.advanceTimersByTimeAsync(SETTLE_BATCH_WINDOW_MS);
    await done;
    expect(lone).toEqual([SETTLE_BATCH_WINDOW_MS]);
  });

  it("writes a full batch at once whatever the window", async () => {
    const { ledger, statements } = fakeLedger();
    const b = new SettlementBatcher(ledger, log, new LedgerHealth(log));
    const waits: number[] = [];
    await Promise.all(Array.from({ length: SETTLE_BATCH_ENTRIES_MAX }, () => settle(b, waits)));
    expect(statements).toEqual([{ at: 0, size: SETTLE_BATCH_ENTRIES_MAX }]);
    expect(Math.max(...waits)).toBe(0);
  });
});
