/**
 * The arithmetic of one limit, shared by both stores: the in-process store runs it in JavaScript, the Redis store
 * runs the same rules in Lua (`redis_store.ts`), and `limits.test.ts` runs the same cases against both.
 *
 * Two kinds of pool:
 * - a **bucket** (RPM, TPM, monthly budget): a level refilled continuously at `refillPerMs` up to `capacity`
 *   (0 for the budget, which is a fresh bucket each UTC month). A strict bucket (RPM) admits when it holds the
 *   whole amount; a debt bucket (TPM, budget) admits while its level is above zero and may go below it, so an
 *   estimate larger than what is left is admitted once and the next request waits (a budget is exceeded by at most
 *   one request's cost). Settlement corrects it by giving back (or taking) the difference.
 * - **slots** (concurrency): units held by gateways and given back when a request ends. A gateway's holding
 *   expires unless renewed, so a crashed gateway's slots come back.
 *
 * `want` ≥ `amount` asks for a local slice on top of the request's own amount: granted only when the pool has it
 * (else just the amount), so slices never cost a refusal.
 */

export type PoolKind = "bucket" | "slots";

export interface PoolSpec {
  kind: PoolKind;
  /** The store key (hash-tagged by its owner). */
  key: string;
  /** Most units the pool holds (requests, tokens, µ$, concurrent requests). */
  capacity: number;
  /** Units added back per ms (buckets; 0 = no refill). */
  refillPerMs: number;
  /** May the level go below zero (TPM, budget)? */
  debt: boolean;
  /** A bucket untouched this long may be forgotten (it would be full again), ms. */
  ttlMs: number;
  /**
   * Level of a bucket the store does not hold yet; null = the store must ask (the budget: this month's spend
   * comes from PostgreSQL), so `take` answers `missing`.
   */
  init: number | null;
}

export interface PoolTake {
  spec: PoolSpec;
  /** Units the request needs now. */
  amount: number;
  /** Units asked for (amount + a local slice); at least amount. */
  want: number;
}

export type TakeResult =
  | { ok: true; granted: number[] }
  | { ok: false; reason: "refused"; index: number; retryAfterMs: number | null; level: number }
  | { ok: false; reason: "missing"; index: number };

export interface PoolGive {
  spec: PoolSpec;
  /** Units given back; negative takes more (a settlement that used more than its estimate). */
  amount: number;
}

/** A bucket's state. */
export interface BucketState {
  level: number;
  atMs: number;
}

/** Slots held per gateway: count and when the holding expires. */
export type SlotState = Map<string, { count: number; expiresAtMs: number }>;

export function refilled(state: BucketState, spec: PoolSpec, nowMs: number): number {
  const elapsed = Math.max(0, nowMs - state.atMs);
  return Math.min(spec.capacity, state.level + elapsed * spec.refillPerMs);
}

export function slotsUsed(state: SlotState, nowMs: number): number {
  let used = 0;
  for (const [gateway, h] of state) {
    if (h.expiresAtMs < nowMs) state.delete(gateway);
    else used += h.count;
  }
  return used;
}

/** Would a bucket at `level` admit `amount`? */
export function bucketAdmits(level: number, amount: number, debt: boolean): boolean {
  return debt ? level > 0 || amount === 0 : level >= amount;
}

/** When a refused bucket would admit, ms (null: never by refill alone). */
export function bucketRetryAfterMs(level: number, amount: number, spec: PoolSpec): number | null {
  if (spec.refillPerMs <= 0) return null;
  const need = spec.debt ? Math.min(1, amount) - level : amount - level;
  return Math.max(1, Math.ceil(need / spec.refillPerMs));
}
