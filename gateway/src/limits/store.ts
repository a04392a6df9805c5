/**
 * Where limits are counted: Redis (shared by every gateway, `redis_store.ts`) or this process (`memory_store.ts`).
 * Each call is one atomic decision over pools that share one owner (one hash tag), so a Redis Cluster can run it.
 */
import type { PoolGive, PoolTake, TakeResult } from "./pool.ts";

export interface PoolStore {
  readonly kind: "redis" | "memory";
  /**
   * Takes every pool's amount (and slice when it has it), or none of them. With `decisionId`, the same decision
   * sent again answers as the first one did instead of taking twice (a retry after a lost answer).
   */
  take(gatewayId: string, takes: readonly PoolTake[], decisionId?: string): Promise<TakeResult>;
  /** Gives units back (or takes more, for negative amounts); never refuses. */
  give(gatewayId: string, gives: readonly PoolGive[]): Promise<void>;
  /** Keeps this gateway's holdings of the given slot pools alive for another hold period. */
  renew(gatewayId: string, slotKeys: readonly string[]): Promise<void>;
  /** Forgets every pool (a store restarted; for tests of recovery). */
  close(): Promise<void>;
}

/** A gateway's hold on concurrency slots lasts this long unless renewed (it renews every third of it), ms. */
export const SLOT_HOLD_MS_DEFAULT = 30_000;
