/**
 * Verifying virtual keys on the request path (keys are issued and revoked in `ops/keys.ts`, which publishes
 * a hub event in the same transaction, so every gateway's key filter and key cache follow at once).
 * Verification answers from a short-lived cache, refuses keys the in-memory filter says were never issued
 * without asking the database, and looks up the rest.
 */
import type { AgentRestriction } from "../routing/mod.ts";
import type { Db } from "@wellspring/db/core";
import { hashKey, KEY_PATTERN } from "../ops/keys.ts";
import { hashPrefix64, KeyFilter, MissBudget } from "./key_filter.ts";
import type { KeyLimits } from "../limits/limiter.ts";
/**
 * How long a verified (or refused) key stays cached. A revocation or user change reaches every gateway at
 * once through a hub event; this is the bound when an event is lost (a change made behind the product's back).
 */
export const KEY_CACHE_TTL_MS = 5_000;
/**
 * While the database cannot be reached, a key whose last answer was "active" and is younger than this (past
 * its TTL) is still accepted: the gateway's held credit bounds what it can spend, and a revocation seen as an
 * event removes the answer at once. Without it, every key older than the TTL would be refused in an outage.
 */
export const KEY_STALE_IF_UNREACHABLE_MS = 60_000;
/** Cache entries kept at most; the oldest go first. */
export const KEY_CACHE_ENTRIES_MAX = 50_000;
/** `lastUsedAt` is written at most once per this interval per key. */
export const LAST_USED_WRITE_INTERVAL_MS = 60_000;
/**
 * Keys whose last `lastUsedAt` write is remembered, at most (the most recent; an entry older than
 * LAST_USED_WRITE_INTERVAL_MS is dropped anyway, as the next use writes again). Entries.
 */
export const LAST_USED_TRACKED_KEYS_MAX = KEY_CACHE_ENTRIES_MAX;
/** Database lookups per second (per gateway) for well-formed keys the key filter does not hold. */
export const KEY_FILTER_MISS_LOOKUPS_PER_S_DEFAULT = 10;

export interface Principal {
  keyId: string;
  userId: string;
  allowedModels: string[];
  /** Which agents may serve this key (routing honours it). */
  agentRestriction: AgentRestriction;
  expiresAt: Date | null;
  /** The user's plan; null = the default plan. */
  planId: string | null;
  /** The key's own limits (RPM, TPM, concurrency, monthly budget), enforced by `limits/`. */
  limits: KeyLimits;
}

/** suspended: the account is; key_suspended: an administrator suspended this key (risk review). */
export type KeyCheck = { ok: true; principal: Principal } | { ok: false; reason: "invalid" | "expired" | "suspended" | "key_suspended" };

export interface KeyVerifierOptions {
  /** Refuse well-formed keys it does not hold without a lookup; null = look every key up. */
  filter: KeyFilter | null;
  /** Lookups per second allowed for keys the filter does not hold. */
  missLookupsPerSecond: number;
  /** The clock, ms (tests inject one). */
  now?: () => number;
}

/** How each verification was answered, for `/metrics`. */
export interface KeyCheckCounts {
  /** From the cache. */
  cache: number;
  /** The filter holds it (or there is no filter): looked up. */
  lookups: number;
  /** The filter does not hold it: looked up from the miss budget. */
  missLookups: number;
  /** The filter does not hold it and the miss budget was spent: refused without a lookup. */
  missRefused: number;
  /** Miss lookups that found an active key (its creation event had not arrived): added to the filter. */
  filterStale: number;
  /** Database queries made (concurrent lookups of one key share a query). */
  queries: number;
  /** The lookup failed (database unreachable) and the key's last "active" answer was used (see KEY_STALE_IF_UNREACHABLE_MS). */
  staleServed: number;
}

interface Loaded {
  check: KeyCheck;
  /** The key exists and is not revoked (whatever its user's state). */
  active: boolean;
  /** The key's and its user's ids when it exists, also for a refusal (a suspension), so their events reach it. */
  ids?: { keyId: string; userId: string };
}

interface Cached {
  at: number;
  check: KeyCheck;
  ids?: { keyId: string; userId: string };
}

export class KeyVerifier {
  readonly #cache = new Map<string, Cached>();
  /** keyId → hash of positively cached keys, so a `key_changed` event finds its entry. */
  readonly #hashByKeyId = new Map<string, string>();
  readonly #inFlight = new Map<string, Promise<Loaded>>();
  /**
   * Counts invalidations (key and user events): an answer loaded across one may predate the change it
   * announces, so it is used once but not cached, and lookups started before it are not joined.
   */
  #epoch = 0;
  /** keyId → when its `lastUsedAt` was last written, oldest first; only writes of the last interval (bounded). */
  readonly #lastUsedWrite = new Map<string, number>();
  readonly #now: () => number;
  readonly #missBudget: MissBudget;
  readonly counts: KeyCheckCounts = { cache: 0, lookups: 0, missLookups: 0, missRefused: 0, filterStale: 0, queries: 0, staleServed: 0 };

  constructor(
    private readonly db: Db,
    private readonly opts: KeyVerifierOptions = { filter: null, missLookupsPerSecond: KEY_FILTER_MISS_LOOKUPS_PER_S_DEFAULT },
  ) {
    this.#now = opts.now ?? Date.now;
    this.#missBudget = new MissBudget(opts.missLookupsPerSecond, this.#now());
  }

  async verify(secret: string): Promise<KeyCheck> {
    if (!KEY_PATTERN.test(secret)) return { ok: false, reason: "invalid" };
    const hash = hashKey(secret);
    const now = this.#now();
    const cached = this.#cache.get(hash);
    let check: KeyCheck;
    if (cached && now - cached.at < KEY_CACHE_TTL_MS) {
      this.counts.cache++;
      check = cached.check;
    } else {
      const filter = this.opts.filter;
      const prefix = hashPrefix64(hash);
      const held = !filter || filter.has(prefix);
      if (!held && !this.#missBudget.take(now)) {
        this.counts.missRefused++;
        return { ok: false, reason: "invalid" };
      }
      if (held) this.counts.lookups++;
      else this.counts.missLookups++;
      const epoch = this.#epoch;
      let loaded: Loaded;
      let stale = false;
      try {
        loaded = await this.#loadOnce(hash);
      } catch (error) {
        // Only an answer still in the cache (no revocation event removed it), only a positive one, only for a while.
        const last = this.#cache.get(hash);
        if (!last?.check.ok || now - last.at >= KEY_CACHE_TTL_MS + KEY_STALE_IF_UNREACHABLE_MS) throw error;
        this.counts.staleServed++;
        stale = true;
        loaded = { check: last.check, active: true };
      }
      check = loaded.check;
      // A last answer is used as it is: not re-cached (the bound counts from its lookup), nothing learnt for the filter.
      if (!stale) {
        if (!held && loaded.active) {
          this.counts.filterStale++;
          filter.add(prefix);
        }
        if (epoch === this.#epoch) this.#remember(hash, now, check, loaded.ids);
      }
    }
    if (check.ok && check.principal.expiresAt && check.principal.expiresAt.getTime() <= now) return { ok: false, reason: "expired" };
    if (check.ok) this.#touch(check.principal.keyId, now);
    return check;
  }

  /** Lookups the miss budget allows now. */
  missBudgetAvailable(): number {
    return this.#missBudget.available(this.#now());
  }

  /** A key was created (hub event): the filter holds it from now on. */
  keyCreated(hashPrefixHex: string): void {
    this.opts.filter?.add(hashPrefix64(hashPrefixHex));
  }

  /** A key was revoked or edited (hub event): forget what was cached about it. */
  keyChanged(keyId: string): void {
    this.#invalidated();
    const hash = this.#hashByKeyId.get(keyId);
    if (hash === undefined) return;
    this.#hashByKeyId.delete(keyId);
    this.#cache.delete(hash);
  }

  /** A user was suspended, reinstated or moved to another plan (hub event): forget their cached keys. */
  userChanged(userId: string): void {
    this.#invalidated();
    for (const [hash, entry] of this.#cache) {
      if (entry.ids?.userId === userId) {
        this.#cache.delete(hash);
        this.#hashByKeyId.delete(entry.ids.keyId);
      }
    }
  }

  /**
   * Events may have been missed (the event connection was re-made): every cached answer is looked up again
   * before it is used, but kept as the last known answer should the database be unreachable then.
   */
  forgetAll(): void {
    this.#invalidated();
    const expired = this.#now() - KEY_CACHE_TTL_MS;
    for (const entry of this.#cache.values()) entry.at = Math.min(entry.at, expired);
  }

  #invalidated(): void {
    this.#epoch++;
    this.#inFlight.clear();
  }

  #remember(hash: string, now: number, check: KeyCheck, ids: Cached["ids"]): void {
    if (this.#cache.size >= KEY_CACHE_ENTRIES_MAX) {
      const [oldHash, old] = this.#cache.entries().next().value!;
      this.#cache.delete(oldHash);
      if (old.ids) this.#hashByKeyId.delete(old.ids.keyId);
    }
    this.#cache.delete(hash);
    this.#cache.set(hash, { at: now, check, ids });
    if (ids) this.#hashByKeyId.set(ids.keyId, hash);
  }

  /** One lookup per key at a time: concurrent first uses of a key share it. */
  #loadOnce(hash: string): Promise<Loaded> {
    let p = this.#inFlight.get(hash);
    if (!p) {
      const load = this.#load(hash).finally(() => {
        if (this.#inFlight.get(hash) === load) this.#inFlight.delete(hash);
      });
      p = load;
      this.#inFlight.set(hash, load);
    }
    return p;
  }

  async #load(hash: string): Promise<Loaded> {
    this.counts.queries++;
    const key = await this.db.virtualKey.findUnique({ where: { hash }, include: { user: { select: { status: true, planId: true } } } });
    if (!key || key.status === "revoked") return { check: { ok: false, reason: "invalid" }, active: false };
    const ids = { keyId: key.id, userId: key.userId };
    if (key.status === "suspended") return { check: { ok: false, reason: "key_suspended" }, active: true, ids };
    if (key.user.status !== "active") return { check: { ok: false, reason: "suspended" }, active: true, ids };
    return {
      check: {
        ok: true,
        principal: {
          keyId: key.id,
          userId: key.userId,
          allowedModels: key.allowedModels,
          expiresAt: key.expiresAt,
          planId: key.user.planId,
          limits: { rpm: key.rpmLimit, tpm: key.tpmLimit, concurrency: key.concurrencyLimit, monthlyBudgetMicros: key.monthlyBudgetMicros },
          agentRestriction: {
            ownerIds: key.allowedOwnerIds,
            minTier: key.minAgentTier === "S" || key.minAgentTier === "A" ? key.minAgentTier : null,
          },
        },
      },
      active: true,
      ids,
    };
  }

  /** Keys whose last `lastUsedAt` write is remembered (at most LAST_USED_TRACKED_KEYS_MAX). */
  get lastUsedTracked(): number {
    return this.#lastUsedWrite.size;
  }

  #touch(keyId: string, now: number): void {
    const last = this.#lastUsedWrite.get(keyId) ?? 0;
    if (now - last < LAST_USED_WRITE_INTERVAL_MS) return;
    // Oldest first: writes older than the interval say nothing any more, and the map stays bounded.
    for (const [id, at] of this.#lastUsedWrite) {
      if (now - at < LAST_USED_WRITE_INTERVAL_MS && this.#lastUsedWrite.size < LAST_USED_TRACKED_KEYS_MAX) break;
      this.#lastUsedWrite.delete(id);
    }
    this.#lastUsedWrite.delete(keyId);
    this.#lastUsedWrite.set(keyId, now);
    void this.db.virtualKey.update({ where: { id: keyId }, data: { lastUsedAt: new Date(now) } }).catch(() => {});
  }
}

/** The key from `Authorization: Bearer …` or `x-api-key` / `api-key` (Anthropic and Azure SDKs). */
export function extractKey(headers: Record<string, string | string[] | undefined>): string | null {
  const auth = headers["authorization"];
  if (typeof auth === "string") {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1]!;
  }
  for (const name of ["x-api-key", "api-key"]) {
    const v = headers[name];
    if (typeof v === "string" && v.trim()) return v.trim();
  }
  return null;
}
