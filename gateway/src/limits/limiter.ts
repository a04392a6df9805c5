/**
 * Admission by limits, before dispatch: per virtual key RPM, TPM, concurrent requests and monthly budget; per user
 * concurrent requests; per agent RPM, TPM and concurrent requests. Counted in a `PoolStore` — Redis shared by every
 * gateway, or this process when there is no Redis — through local slices: a gateway takes a small slice of a
 * pool (at most `sliceFraction` of its capacity, and only when the pool has it to spare) with a request's own
 * units and admits the next requests from it in memory, so most decisions cost no round trip. Nothing is admitted
 * that a store did not grant, so gateways together never exceed a limit; slices a gateway holds but does not use
 * go back after `sliceIdleMs`, so they delay others by at most that (docs/ARCHITECTURE.md, "Limits").
 *
 * Redis unreachable: the gateway counts in its own memory with each limit divided by the live gateways (from
 * PostgreSQL), reports it (metric `wellspring_limits_degraded`, `/readyz`, a warning), pings Redis every
 * `redisRetryMs` and goes back to Redis when it answers. Balances never depend on Redis (they are PostgreSQL's).
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "../log.ts";
import { observeLimiter } from "../observability/metrics.ts";
import { MemoryStore } from "./memory_store.ts";
import type { PoolSpec, PoolTake, TakeResult } from "./pool.ts";
import type { PoolStore } from "./store.ts";
import { SLOT_HOLD_MS_DEFAULT } from "./store.ts";

/** Share of a pool's capacity one gateway may hold as a local slice (4 gateways: at most 1% of a limit held idle). */
export const LIMITS_SLICE_FRACTION_DEFAULT = 0.0025;
/** A slice unused this long goes back to the store, ms. */
export const LIMITS_SLICE_IDLE_MS_DEFAULT = 500;
/** How often an unreachable Redis is tried again, ms. */
export const LIMITS_REDIS_RETRY_MS_DEFAULT = 1_000;
/**
 * How often the live gateway count is read while Redis answers, ms: a gateway that loses Redis divides its limits
 * by the last count at once, instead of counting each limit whole until a fresh count arrives.
 */
const LIVE_GATEWAYS_REFRESH_MS = 10_000;
/**
 * Concurrent requests one user may have across all keys and gateways unless configured otherwise (0 = no limit:
 * a user's keys carry their own concurrency limits, and one agent serves 1,024 streams).
 */
export const USER_CONCURRENCY_MAX_DEFAULT = 0;
/** RPM and TPM buckets refill their whole capacity in this long, ms. */
const MINUTE_MS = 60_000;
/** A monthly budget bucket is kept at most this long after its last use (a month and a margin), ms. */
const BUDGET_TTL_MS = 35 * 24 * 3_600_000;

export interface KeyLimits {
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
  /** µ$ per UTC month. */
  monthlyBudgetMicros: bigint | null;
}

export interface AgentLimits {
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
}

/** Which limit refused, for the answer's wording and headers. */
export type LimitName = "key_rpm" | "key_tpm" | "key_concurrency" | "key_budget" | "user_concurrency" | "agent_rpm" | "agent_tpm" | "agent_concurrency";

export interface Refusal {
  limit: LimitName;
  /** The limit's value (requests per minute, tokens per minute, concurrent requests, µ$). */
  capacity: number;
  /** Units left when refused (≤ 0 for debt pools). */
  remaining: number;
  /** When a retry may be admitted, ms; null = not by waiting (concurrency: when a request ends; budget: next month). */
  retryAfterMs: number | null;
}

export class LimitRefusedError extends Error {
  constructor(readonly refusal: Refusal) {
    super(`limit ${refusal.limit} reached`);
    this.name = "LimitRefusedError";
  }
}

export interface LimiterOptions {
  gatewayId: string;
  /** Redis when configured (null: this process is the only gateway and counts in memory). */
  shared: PoolStore | null;
  /** Key prefix of every pool (Redis keys: `<prefix>{k:<keyId>}:rpm:<limit>`…). */
  prefix: string;
  userConcurrencyMax: number;
  sliceFraction: number;
  sliceIdleMs: number;
  redisRetryMs: number;
  slotHoldMs: number;
  /** Gateways alive now (PostgreSQL's view), for dividing limits while Redis is unreachable. */
  liveGateways(): Promise<number>;
  /** The key's charges this UTC month so far, µ$ (from PostgreSQL), to start its budget pool. */
  monthSpendMicros(keyId: string, monthStart: Date): Promise<bigint>;
  /** Answers whether Redis is reachable again. */
  ping(): Promise<boolean>;
  log: Logger;
  now?: () => number;
}

interface Slice {
  units: number;
  lastMs: number;
  spec: PoolSpec;
  store: PoolStore;
}

interface Taken {
  name: LimitName;
  spec: PoolSpec;
  amount: number;
}

interface Group {
  takes: Taken[];
}

const tagOf = (key: string) => key.slice(0, key.indexOf("}") + 1);
const specKey = (store: PoolStore, key: string) => `${store.kind}:${key}`;

export class Limiter {
  readonly #opts: LimiterOptions;
  readonly #now: () => number;
  /** Counts in this process while Redis is unreachable (or always, without Redis). */
  #local: MemoryStore;
  #degradedSince: number | null = null;
  /** Live gateways at the last count (PostgreSQL's view); the divisor while Redis is lost. */
  #lastLive = 1;
  readonly #slices = new Map<string, Slice>();
  /** Slot pools this gateway holds units of (in flight or in a slice): renewed so they do not expire. */
  readonly #heldSlots = new Map<string, number>();
  readonly #timers: ReturnType<typeof setInterval>[] = [];
  #probing = false;
  /** Per owner (hash tag), the last decision queued on this gateway. */
  readonly #pending = new Map<string, Promise<unknown>>();
  /** Decision ids: this limiter's own prefix (a restarted gateway may keep its id) and a counter. */
  readonly #decisionPrefix = randomBytes(6).toString("base64url");
  #decisions = 0;
  /** Buckets refused recently: refused locally until they could admit. */
  readonly #blocked = new Map<string, { untilMs: number; refusal: Refusal }>();

  constructor(opts: LimiterOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#local = new MemoryStore(this.#now, opts.slotHoldMs);
  }

  /** Starts the timers that return idle slices, renew slot holdings and retry Redis. */
  start(): void {
    const t1 = setInterval(() => this.#returnIdleSlices(), Math.max(10, Math.floor(this.#opts.sliceIdleMs / 2)));
    const t2 = setInterval(() => void this.#renewSlots(), Math.max(100, Math.floor(this.#opts.slotHoldMs / 3)));
    const t3 = setInterval(() => void this.#probe(), this.#opts.redisRetryMs);
    const timers = [t1, t2, t3];
    if (this.#opts.shared) {
      timers.push(setInterval(() => void this.#countLive(), LIVE_GATEWAYS_REFRESH_MS));
      void this.#countLive();
    }
    for (const t of timers) {
      t.unref();
      this.#timers.push(t);
    }
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#returnIdleSlices(true);
    await Promise.resolve();
  }

  /** Which store decides now: `redis`, `local` (Redis unreachable) or `memory` (no Redis configured). */
  get mode(): "redis" | "local" | "memory" {
    if (!this.#opts.shared) return "memory";
    return this.#degradedSince === null ? "redis" : "local";
  }

  /** What each limit is divided by in the local store: the live gateways while Redis is lost (1 otherwise). */
  get #divisor(): number {
    return this.#degradedSince === null ? 1 : this.#lastLive;
  }

  get degradedSince(): number | null {
    return this.#degradedSince;
  }

  /**
   * At a request's start: key concurrency and RPM, user concurrency. Throws LimitRefusedError. The returned
   * admission must be ended (`end`) exactly once.
   */
  async admitStart(p: { keyId: string; userId: string; key: KeyLimits }): Promise<Admission> {
    const admission = new Admission(this);
    const keyGroup: Group = { takes: [] };
    const tag = `${this.#opts.prefix}{k:${p.keyId}}`;
    if (p.key.concurrency !== null)
      keyGroup.takes.push({ name: "key_concurrency", spec: slots(`${tag}:conc:${p.key.concurrency}`, p.key.concurrency), amount: 1 });
    if (p.key.rpm !== null) keyGroup.takes.push({ name: "key_rpm", spec: perMinute(`${tag}:rpm:${p.key.rpm}`, p.key.rpm, false), amount: 1 });
    const userGroup: Group = { takes: [] };
    if (this.#opts.userConcurrencyMax > 0) {
      const max = this.#opts.userConcurrencyMax;
      userGroup.takes.push({ name: "user_concurrency", spec: slots(`${this.#opts.prefix}{u:${p.userId}}:conc:${max}`, max), amount: 1 });
    }
    await this.#admitGroups(admission, [keyGroup, userGroup], p.keyId);
    return admission;
  }

  /**
   * Once the body's fields and the agent are known: key TPM (the request's token estimate) and monthly budget (what
   * billing holds for it), agent RPM, TPM and concurrency. Throws LimitRefusedError.
   */
  async admitBody(
    admission: Admission,
    p: { keyId: string; key: KeyLimits; estimatedTokens: number; heldMicros: bigint | null; agentId: string | null; agent: AgentLimits | null },
  ): Promise<void> {
    const tag = `${this.#opts.prefix}{k:${p.keyId}}`;
    const keyGroup: Group = { takes: [] };
    if (p.key.tpm !== null) keyGroup.takes.push({ name: "key_tpm", spec: perMinute(`${tag}:tpm:${p.key.tpm}`, p.key.tpm, true), amount: p.estimatedTokens });
    if (p.key.monthlyBudgetMicros !== null && p.heldMicros !== null) {
      const budget = Number(p.key.monthlyBudgetMicros);
      const spec: PoolSpec = {
        kind: "bucket",
        key: `${tag}:budget:${monthOf(this.#now())}:${budget}`,
        capacity: budget,
        refillPerMs: 0,
        debt: true,
        ttlMs: BUDGET_TTL_MS,
        init: null,
      };
      keyGroup.takes.push({ name: "key_budget", spec, amount: Number(p.heldMicros) });
    }
    const agentGroup: Group = { takes: [] };
    if (p.agentId && p.agent) {
      const atag = `${this.#opts.prefix}{a:${p.agentId}}`;
      const a = p.agent;
      if (a.concurrency !== null) agentGroup.takes.push({ name: "agent_concurrency", spec: slots(`${atag}:conc:${a.concurrency}`, a.concurrency), amount: 1 });
      if (a.rpm !== null) agentGroup.takes.push({ name: "agent_rpm", spec: perMinute(`${atag}:rpm:${a.rpm}`, a.rpm, false), amount: 1 });
      if (a.tpm !== null) agentGroup.takes.push({ name: "agent_tpm", spec: perMinute(`${atag}:tpm:${a.tpm}`, a.tpm, true), amount: p.estimatedTokens });
    }
    await this.#admitGroups(admission, [keyGroup, agentGroup], p.keyId);
  }

  async #admitGroups(admission: Admission, groups: Group[], keyId: string): Promise<void> {
    const done: { store: PoolStore; taken: Taken[] }[] = [];
    try {
      for (const group of groups) {
        if (group.takes.length === 0) continue;
        const store = await this.#admitGroup(group, keyId);
        done.push({ store, taken: group.takes });
      }
    } catch (error) {
      for (const d of done) this.#giveBack(d.store, d.taken);
      if (error instanceof LimitRefusedError) observeLimiter("limits", "refused");
      throw error;
    }
    if (done.length > 0) observeLimiter("limits", "allowed");
    for (const d of done) admission.add(d.store, d.taken);
  }

  /** One group (one owner, one hash tag): from local slices when they cover it, else one store decision. */
  /**
   * One decision per owner at a time from this gateway, in arrival order: a burst waits for the slice the first
   * one brings instead of sending every request to Redis.
   */
  async #admitGroup(group: Group, keyId: string): Promise<PoolStore> {
    const tag = tagOf(group.takes[0]!.spec.key);
    const prev = this.#pending.get(tag);
    const decide = () => this.#decide(group, keyId);
    const run = prev ? prev.then(decide, decide) : decide();
    this.#pending.set(tag, run);
    try {
      return await run;
    } finally {
      if (this.#pending.get(tag) === run) this.#pending.delete(tag);
    }
  }

  async #decide(group: Group, keyId: string): Promise<PoolStore> {
    const store = this.#store();
    const nowMs = this.#now();
    for (const t of group.takes) {
      const blocked = this.#blocked.get(t.spec.key);
      if (blocked === undefined) continue;
      if (blocked.untilMs <= nowMs) this.#blocked.delete(t.spec.key);
      else throw new LimitRefusedError({ ...blocked.refusal, retryAfterMs: blocked.refusal.retryAfterMs === null ? null : blocked.untilMs - nowMs });
    }
    const missing = group.takes.filter((t) => this.#sliceOf(store, this.#scaled(store, t.spec)).units < t.amount);
    if (missing.length === 0) {
      for (const t of group.takes) this.#useSlice(store, this.#scaled(store, t.spec), t.amount, nowMs);
      this.#hold(store, group.takes, 1);
      return store;
    }
    const takes: PoolTake[] = missing.map((t) => {
      const spec = this.#scaled(store, t.spec);
      const slice = Math.floor(spec.capacity * this.#opts.sliceFraction);
      return { spec, amount: t.amount, want: t.amount + slice };
    });
    let result;
    try {
      result = await this.#take(store, takes);
      if (!result.ok && result.reason === "missing") {
        const t = takes[result.index]!;
        const spent = await this.#opts.monthSpendMicros(keyId, monthStart(this.#now()));
        t.spec = { ...t.spec, init: t.spec.capacity - Number(spent) / (store === this.#local ? this.#divisor : 1) };
        result = await this.#take(store, takes);
      }
    } catch (error) {
      if (store === this.#local) throw error;
      this.#degrade(error);
      return this.#decide(group, keyId);
    }
    if (!result.ok) {
      if (result.reason === "missing") throw new Error("limits: budget pool not started");
      const refused = missing[result.index]!;
      const refusal: Refusal = {
        limit: refused.name,
        capacity: refused.spec.capacity,
        remaining: Math.floor(result.level * (store === this.#local ? this.#divisor : 1)),
        retryAfterMs: result.retryAfterMs,
      };
      // A bucket that refills is refused here, without asking, until it could admit (at most a slice's idle time,
      // since another gateway may give units back sooner).
      if (result.retryAfterMs !== null) {
        this.#blocked.set(refused.spec.key, { untilMs: this.#now() + Math.min(result.retryAfterMs, this.#opts.sliceIdleMs), refusal });
      }
      throw new LimitRefusedError(refusal);
    }
    const nowAfter = this.#now();
    result.granted.forEach((granted, i) => {
      const t = takes[i]!;
      if (granted > t.amount) {
        const s = this.#sliceOf(store, t.spec, true);
        s.units += granted - t.amount;
        s.lastMs = nowAfter;
      }
    });
    for (const t of group.takes) {
      if (!missing.includes(t)) this.#useSlice(store, this.#scaled(store, t.spec), t.amount, nowAfter);
    }
    this.#hold(store, group.takes, 1);
    return store;
  }

  /**
   * One decision from a store. A failed Redis decision is asked once more before Redis counts as lost: one command
   * that timed out because this process's event loop was busy (its answer arrived late) must not hand every limit to
   * per-gateway counting. The failed attempt may have been applied in Redis: both carry one decision id, and Redis
   * answers the retry with what the first attempt took instead of taking twice (`redis_store.ts`).
   */
  async #take(store: PoolStore, takes: PoolTake[]): Promise<TakeResult> {
    const decisionId = store === this.#local ? undefined : `${this.#decisionPrefix}.${++this.#decisions}`;
    try {
      return await store.take(this.#opts.gatewayId, takes, decisionId);
    } catch (error) {
      if (store === this.#local) throw error;
      this.#opts.log.info("limits.redis_retry", { error });
      return await store.take(this.#opts.gatewayId, takes, decisionId);
    }
  }

  /** A request ended: its slots go back to the local slice (or the store), its estimates are corrected. */
  end(store: PoolStore, taken: Taken[], used: { tokens: number | null; chargedMicros: bigint | null }): void {
    this.#hold(store, taken, -1);
    const gives: { spec: PoolSpec; amount: number }[] = [];
    for (const t of taken) {
      const spec = this.#scaled(store, t.spec);
      if (spec.kind === "slots") {
        // Kept for the next request while within a slice; beyond it, free for every gateway at once.
        const s = this.#sliceOf(store, spec);
        if (store === this.#store() && s.units + t.amount <= Math.floor(spec.capacity * this.#opts.sliceFraction)) {
          const kept = this.#sliceOf(store, spec, true);
          kept.units += t.amount;
          kept.lastMs = this.#now();
        } else gives.push({ spec, amount: t.amount });
      } else if ((t.name === "key_tpm" || t.name === "agent_tpm") && used.tokens !== null) {
        gives.push({ spec, amount: t.amount - used.tokens });
      } else if (t.name === "key_budget" && used.chargedMicros !== null) {
        gives.push({ spec, amount: t.amount - Number(used.chargedMicros) });
      }
    }
    this.#give(store, gives);
  }

  /**
   * Whether `store` counts for every gateway: Redis, or this gateway's memory when it runs without Redis (one
   * gateway) — not the per-gateway share it counts in while Redis is away.
   */
  isShared(store: PoolStore): boolean {
    return this.#opts.shared ? store === this.#opts.shared : store === this.#local;
  }

  /**
   * A deferred settlement's charge is known: the budget pool its request took from gets back what the charge did
   * not use (`amountMicros` = taken − charged; negative takes the excess). Nothing while Redis is away (the pool
   * is not this gateway's to correct then) or when the pool has expired (a new month's pool starts from the
   * charges in PostgreSQL).
   */
  refundBudget(taken: BudgetTaken, amountMicros: number): void {
    if (amountMicros === 0 || this.#degradedSince !== null) return;
    const spec: PoolSpec = { kind: "bucket", key: taken.pool, capacity: taken.capacityMicros, refillPerMs: 0, debt: true, ttlMs: BUDGET_TTL_MS, init: null };
    this.#give(this.#opts.shared ?? this.#local, [{ spec, amount: amountMicros }]);
  }

  #giveBack(store: PoolStore, taken: Taken[]): void {
    this.#hold(store, taken, -1);
    this.#give(
      store,
      taken.map((t) => ({ spec: this.#scaled(store, t.spec), amount: t.amount })),
    );
  }

  #give(store: PoolStore, gives: { spec: PoolSpec; amount: number }[]): void {
    const nonzero = gives.filter((g) => g.amount !== 0);
    if (nonzero.length === 0) return;
    // One owner per call (Cluster): group by hash tag.
    const byTag = new Map<string, typeof nonzero>();
    for (const g of nonzero) {
      const tag = tagOf(g.spec.key);
      byTag.set(tag, [...(byTag.get(tag) ?? []), g]);
    }
    for (const group of byTag.values()) {
      store.give(this.#opts.gatewayId, group).catch((error: unknown) => {
        if (store !== this.#local) this.#degrade(error);
      });
    }
  }

  #hold(store: PoolStore, taken: Taken[], delta: number): void {
    for (const t of taken) {
      if (t.spec.kind !== "slots" || store === this.#local) continue;
      const n = (this.#heldSlots.get(t.spec.key) ?? 0) + delta;
      if (n <= 0) this.#heldSlots.delete(t.spec.key);
      else this.#heldSlots.set(t.spec.key, n);
    }
  }

  #useSlice(store: PoolStore, spec: PoolSpec, amount: number, nowMs: number): void {
    const s = this.#sliceOf(store, spec, true);
    s.units -= amount;
    s.lastMs = nowMs;
  }

  #sliceOf(store: PoolStore, spec: PoolSpec, create = false): Slice {
    const k = specKey(store, spec.key);
    let s = this.#slices.get(k);
    if (!s) {
      s = { units: 0, lastMs: this.#now(), spec, store };
      if (create) this.#slices.set(k, s);
    }
    return s;
  }

  #returnIdleSlices(all = false): void {
    const nowMs = this.#now();
    for (const [k, b] of this.#blocked) if (b.untilMs <= nowMs) this.#blocked.delete(k);
    const current = this.#store();
    for (const [k, s] of this.#slices) {
      const cap = Math.floor(s.spec.capacity * this.#opts.sliceFraction);
      // Slots returned by ended requests beyond a slice go back at once; the rest when idle.
      const idle = all || s.store !== current || nowMs - s.lastMs >= this.#opts.sliceIdleMs;
      const back = idle ? s.units : Math.max(0, s.units - cap);
      if (back > 0) {
        s.units -= back;
        this.#give(s.store, [{ spec: s.spec, amount: back }]);
      }
      if (s.units <= 0 && idle) this.#slices.delete(k);
    }
  }

  async #renewSlots(): Promise<void> {
    const shared = this.#opts.shared;
    if (!shared || this.#degradedSince !== null) return;
    const keys = [...this.#heldSlots.keys(), ...[...this.#slices.values()].filter((s) => s.spec.kind === "slots" && s.store === shared).map((s) => s.spec.key)];
    const byTag = new Map<string, string[]>();
    for (const key of new Set(keys)) {
      const tag = tagOf(key);
      byTag.set(tag, [...(byTag.get(tag) ?? []), key]);
    }
    for (const group of byTag.values()) {
      await shared.renew(this.#opts.gatewayId, group).catch((error: unknown) => this.#degrade(error));
    }
  }

  #store(): PoolStore {
    return this.#opts.shared && this.#degradedSince === null ? this.#opts.shared : this.#local;
  }

  /** A pool as the given store counts it: while Redis is unreachable each gateway holds its share of every limit. */
  #scaled(store: PoolStore, spec: PoolSpec): PoolSpec {
    if (store !== this.#local || this.#divisor === 1) return spec;
    const d = this.#divisor;
    return {
      ...spec,
      capacity: Math.max(1, Math.floor(spec.capacity / d)),
      refillPerMs: spec.refillPerMs / d,
      init: spec.init === null ? null : spec.init / d,
    };
  }

  #degrade(error: unknown): void {
    if (this.#degradedSince !== null || !this.#opts.shared) return;
    this.#degradedSince = this.#now();
    this.#local = new MemoryStore(this.#now, this.#opts.slotHoldMs);
    this.#opts.log.warn("limits.redis_unreachable", { error, note: "limits are counted per gateway (each limit ÷ live gateways) until Redis answers" });
    void this.#opts
      .liveGateways()
      .then((n) => {
        this.#lastLive = Math.max(1, n);
      })
      .catch(() => {});
  }

  async #countLive(): Promise<void> {
    if (!this.#opts.shared || this.#degradedSince !== null) return;
    try {
      this.#lastLive = Math.max(1, await this.#opts.liveGateways());
    } catch {
      /* keep the last count */
    }
  }

  async #probe(): Promise<void> {
    if (this.#degradedSince === null || this.#probing) return;
    this.#probing = true;
    try {
      if (await this.#opts.ping()) {
        this.#opts.log.info("limits.redis_back", { degradedMs: this.#now() - this.#degradedSince });
        this.#degradedSince = null;
      } else {
        this.#lastLive = Math.max(1, await this.#opts.liveGateways());
      }
    } catch {
      /* still down */
    } finally {
      this.#probing = false;
    }
  }
}

/** A key's monthly budget take, kept by a deferred settlement until its charge is known (µ$). */
export interface BudgetTaken {
  /** The pool's Redis key (the key, the UTC month and the budget it was started with). */
  pool: string;
  capacityMicros: number;
  takenMicros: number;
}

/** What one request took from the limits; ended once with what it used. */
export class Admission {
  readonly #parts: { store: PoolStore; taken: Taken[] }[] = [];
  #ended = false;
  constructor(private readonly limiter: Limiter) {}

  add(store: PoolStore, taken: Taken[]): void {
    this.#parts.push({ store, taken });
  }

  /**
   * What the key's monthly budget pool took for this request, if it was taken from the shared store (Redis): a
   * deferred settlement keeps it and gives back what the final charge did not use (`Limiter.refundBudget`). Null
   * when the key has no budget or the limits were counted per gateway while Redis was away: such a take is
   * this gateway's alone and is not corrected later.
   */
  budgetTaken(): BudgetTaken | null {
    for (const p of this.#parts) {
      if (!this.limiter.isShared(p.store)) continue;
      const t = p.taken.find((x) => x.name === "key_budget");
      if (t) return { pool: t.spec.key, capacityMicros: t.spec.capacity, takenMicros: t.amount };
    }
    return null;
  }

  /** The request ended: slots back, TPM and budget corrected to what it used (null: keep the estimate). */
  end(used: { tokens: number | null; chargedMicros: bigint | null }): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const p of this.#parts) this.limiter.end(p.store, p.taken, used);
  }
}

function perMinute(key: string, perMinute: number, debt: boolean): PoolSpec {
  return { kind: "bucket", key, capacity: perMinute, refillPerMs: perMinute / MINUTE_MS, debt, ttlMs: 2 * MINUTE_MS, init: perMinute };
}

function slots(key: string, capacity: number): PoolSpec {
  return { kind: "slots", key, capacity, refillPerMs: 0, debt: false, ttlMs: SLOT_HOLD_MS_DEFAULT * 2, init: null };
}

/** `YYYY-MM` of a UTC instant. */
export function monthOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 7);
}

export function monthStart(ms: number): Date {
  const d = new Date(ms);
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
}
