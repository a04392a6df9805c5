/**
 * Which virtual keys may exist, answered in memory, so a well-formed key that was never issued costs no
 * database lookup (ARCHITECTURE.md, "Unknown keys cost no database lookup").
 *
 * The filter holds the first 64 bits of each active key's SHA-256: a sorted `BigUint64Array` built from the
 * database (8 bytes a key), plus a set of the keys created since (from `key_created` hub events, or found by
 * a lookup the filter did not expect). It has no false negatives for keys it was told about; a random key
 * passes it with probability (keys / 2^64), about 5 × 10⁻¹⁴ with a million keys. Revoked keys stay in it
 * until the next rebuild: the key cache and the database still refuse them.
 *
 * Filter misses may still be looked up, within a budget (`MissBudget`), so a key whose creation event has
 * not arrived yet still works while nobody is flooding the gateway with random keys.
 */
import type pg from "pg";
import type { Logger } from "../log.ts";

/** How often the filter is rebuilt from the database by default (hub events keep it current between), ms. */
export const KEY_FILTER_REBUILD_INTERVAL_MS_DEFAULT = 600_000;
/** Keys added since the last rebuild that the filter holds before it asks for an early rebuild. */
export const KEY_FILTER_RECENT_MAX = 65_536;

/** The filter's value for a key: the first 16 hex digits of its stored SHA-256 (`virtual_keys.hash`). */
export function hashPrefix64(hashHex: string): bigint {
  return BigInt(`0x${hashHex.slice(0, 16)}`);
}

export class KeyFilter {
  #sorted: BigUint64Array = new BigUint64Array(0);
  #recent = new Set<bigint>();
  /** Additions received while a rebuild's query runs: the snapshot may not contain them. */
  #sinceRebuildStarted: Set<bigint> | null = null;

  /** Active keys in the snapshot plus those added since (revoked ones until the next rebuild). */
  get size(): number {
    return this.#sorted.length + this.#recent.size;
  }

  /** True when enough keys were added since the last rebuild that a rebuild should run now. */
  get wantsRebuild(): boolean {
    return this.#recent.size > KEY_FILTER_RECENT_MAX;
  }

  has(prefix: bigint): boolean {
    if (this.#recent.has(prefix)) return true;
    const a = this.#sorted;
    let lo = 0;
    let hi = a.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = a[mid]!;
      if (v === prefix) return true;
      if (v < prefix) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  add(prefix: bigint): void {
    this.#recent.add(prefix);
    this.#sinceRebuildStarted?.add(prefix);
  }

  /**
   * Call before querying the active keys, then `install` the query's result (or `cancel` when it failed).
   * Keys added between the two are kept: their rows may have committed after the query's snapshot.
   * Run one rebuild at a time.
   */
  beginRebuild(): { install(prefixes: BigUint64Array): void; cancel(): void } {
    const since = new Set<bigint>();
    this.#sinceRebuildStarted = since;
    const done = () => {
      if (this.#sinceRebuildStarted === since) this.#sinceRebuildStarted = null;
    };
    return {
      install: (prefixes) => {
        prefixes.sort();
        this.#sorted = prefixes;
        this.#recent = since;
        done();
      },
      cancel: done,
    };
  }
}

/**
 * Database lookups allowed for keys the filter does not hold: a token bucket of `perSecond` lookups that
 * holds at most one second's worth. Time comes from the caller (ms), so tests drive it.
 */
export class MissBudget {
  #tokens: number;
  #at: number;

  constructor(
    private readonly perSecond: number,
    now: number,
  ) {
    this.#tokens = perSecond;
    this.#at = now;
  }

  take(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Whole lookups the budget allows now (for `/metrics`: 0 while random keys flood the gateway). */
  available(now: number): number {
    this.#refill(now);
    return Math.floor(this.#tokens);
  }

  #refill(now: number): void {
    this.#tokens = Math.min(this.perSecond, this.#tokens + (Math.max(0, now - this.#at) / 1000) * this.perSecond);
    this.#at = Math.max(this.#at, now);
  }
}

/** The first 64 bits of every active key's hash, from the database. */
export async function activeKeyPrefixes(pool: pg.Pool): Promise<BigUint64Array> {
  const r = await pool.query<[string]>({ text: "SELECT substr(hash, 1, 16) FROM virtual_keys WHERE status = 'active'", rowMode: "array" });
  const out = new BigUint64Array(r.rows.length);
  for (let i = 0; i < r.rows.length; i++) out[i] = BigInt(`0x${r.rows[i]![0]}`);
  return out;
}

/**
 * Keeps a `KeyFilter` built from the database: at start, every `intervalMs` (which also drops revoked keys),
 * when the filter asks for it, and after the hub event connection was re-made (events may have been missed).
 * One rebuild runs at a time; a failed one keeps the previous filter and is logged.
 */
export class KeyFilterLoader {
  #running: Promise<void> | null = null;
  #again = false;
  #timer: ReturnType<typeof setInterval> | null = null;
  /** When the last rebuild finished and how long it took, for `/metrics`. */
  lastRebuildMs = 0;

  constructor(
    private readonly filter: KeyFilter,
    private readonly load: () => Promise<BigUint64Array>,
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  /** Builds the filter once (awaited at start: the gateway serves only with a filter) and schedules rebuilds. */
  async start(): Promise<void> {
    await this.rebuild();
    this.#timer = setInterval(() => void this.rebuild().catch(() => {}), this.intervalMs);
    this.#timer.unref();
  }

  /** Rebuilds now; a call while one runs makes one more run after it. */
  rebuild(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    const run = async (): Promise<void> => {
      do {
        this.#again = false;
        const started = performance.now();
        const build = this.filter.beginRebuild();
        try {
          build.install(await this.load());
          this.lastRebuildMs = performance.now() - started;
          this.log.debug("keys.filter_rebuilt", { entries: this.filter.size, tookMs: Math.round(this.lastRebuildMs) });
        } catch (error) {
          build.cancel();
          this.log.warn("keys.filter_rebuild_failed", { error });
          throw error;
        }
      } while (this.#again);
    };
    this.#running = run().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}
