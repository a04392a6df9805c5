/** Limits counted in this process: the store of a single gateway without Redis, and of a gateway whose Redis is down. */
import {
  bucketAdmits,
  bucketRetryAfterMs,
  refilled,
  slotsUsed,
  type BucketState,
  type PoolGive,
  type PoolTake,
  type SlotState,
  type TakeResult,
} from "./pool.ts";
import { SLOT_HOLD_MS_DEFAULT, type PoolStore } from "./store.ts";

/** Pools kept at most; past it the least recently created go (they are full again, or their holders renew them). */
const MEMORY_POOLS_MAX = 200_000;

export class MemoryStore implements PoolStore {
  readonly kind = "memory";
  readonly #buckets = new Map<string, BucketState & { expiresAtMs: number }>();
  readonly #slots = new Map<string, SlotState>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly slotHoldMs = SLOT_HOLD_MS_DEFAULT,
  ) {}

  take(gatewayId: string, takes: readonly PoolTake[]): Promise<TakeResult> {
    const nowMs = this.now();
    const levels: number[] = [];
    for (let i = 0; i < takes.length; i++) {
      const { spec, amount } = takes[i]!;
      if (spec.kind === "slots") {
        const used = slotsUsed(this.#slots.get(spec.key) ?? (new Map() as SlotState), nowMs);
        const free = spec.capacity - used;
        if (free < amount) return Promise.resolve({ ok: false, reason: "refused", index: i, retryAfterMs: null, level: free });
        levels.push(free);
        continue;
      }
      const state = this.#bucket(spec.key, nowMs);
      if (!state) {
        if (spec.init === null) return Promise.resolve({ ok: false, reason: "missing", index: i });
        levels.push(Math.min(spec.capacity, spec.init));
      } else levels.push(refilled(state, spec, nowMs));
      const level = levels[i]!;
      if (!bucketAdmits(level, amount, spec.debt))
        return Promise.resolve({ ok: false, reason: "refused", index: i, retryAfterMs: bucketRetryAfterMs(level, amount, spec), level });
    }
    const granted = takes.map(({ spec, amount, want }, i) => {
      const level = levels[i]!;
      const grant = want > amount && level >= want ? want : amount;
      if (spec.kind === "slots") {
        const state = this.#slotState(spec.key);
        const held = state.get(gatewayId);
        state.set(gatewayId, { count: (held?.count ?? 0) + grant, expiresAtMs: nowMs + this.slotHoldMs });
      } else this.#setBucket(spec.key, { level: level - grant, atMs: nowMs, expiresAtMs: nowMs + spec.ttlMs });
      return grant;
    });
    return Promise.resolve({ ok: true, granted });
  }

  give(gatewayId: string, gives: readonly PoolGive[]): Promise<void> {
    const nowMs = this.now();
    for (const { spec, amount } of gives) {
      if (spec.kind === "slots") {
        const held = this.#slots.get(spec.key)?.get(gatewayId);
        if (held) held.count = Math.max(0, held.count - amount);
        continue;
      }
      const state = this.#bucket(spec.key, nowMs);
      if (!state) continue; // forgotten: it is full again (or, for a budget, re-read from the ledger)
      this.#setBucket(spec.key, { level: Math.min(spec.capacity, refilled(state, spec, nowMs) + amount), atMs: nowMs, expiresAtMs: nowMs + spec.ttlMs });
    }
    return Promise.resolve();
  }

  renew(gatewayId: string, slotKeys: readonly string[]): Promise<void> {
    const expiresAtMs = this.now() + this.slotHoldMs;
    for (const key of slotKeys) {
      const held = this.#slots.get(key)?.get(gatewayId);
      if (held) held.expiresAtMs = expiresAtMs;
    }
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#buckets.clear();
    this.#slots.clear();
    return Promise.resolve();
  }

  #bucket(key: string, nowMs: number): BucketState | null {
    const state = this.#buckets.get(key);
    if (!state) return null;
    if (state.expiresAtMs < nowMs) {
      this.#buckets.delete(key);
      return null;
    }
    return state;
  }

  #setBucket(key: string, state: BucketState & { expiresAtMs: number }): void {
    if (!this.#buckets.has(key) && this.#buckets.size >= MEMORY_POOLS_MAX) this.#buckets.delete(this.#buckets.keys().next().value!);
    this.#buckets.set(key, state);
  }

  #slotState(key: string): SlotState {
    let state = this.#slots.get(key);
    if (!state) {
      if (this.#slots.size >= MEMORY_POOLS_MAX) this.#slots.delete(this.#slots.keys().next().value!);
      state = new Map();
      this.#slots.set(key, state);
    }
    return state;
  }
}
