/**
 * Account links: which accounts look like one person. The portal records what an account is seen with — the
 * address it signed up and signs in from, a device cookie, the payout destination an owner sets, the redemption
 * batch it redeemed from (and the batch's creator) — as signals (`account_signals`); two accounts seen with the
 * same kind and value are linked (`account_links`, both directions). The owners' agents' detectors link owners
 * directly: one provider key behind two owners (`key_reuse.ts`), one egress address (`egress.ts`).
 *
 * Personal values are kept only as keyed HMACs (`linkValueKey`, keyed by the portal's secret): equal values
 * compare equal, a database dump alone does not give them back. Batch ids are not personal and are kept as they
 * are. The self-dealing detector (`linked_accounts.ts`) reads a user's links through `LinkedAccounts`, a cache.
 */
import { createHmac } from "node:crypto";
import type { Db } from "@wellspring/db/core";

/** Kinds the portal records as signals. */
export type SignalKind = "signup_address" | "signin_address" | "device" | "payout_destination" | "redemption_batch";
/** What links two accounts: a shared signal, or an owners' detector (`same_account`: the user is the owner). */
export type LinkKind = SignalKind | "key_fingerprint" | "shared_egress" | "same_account";

/** Other accounts one signal links, the first seen (one shared office address must not link a thousand accounts). */
export const LINK_PEERS_PER_SIGNAL_MAX = 50;
/** Links read for one user, at most (what the detector and the admin see). */
export const LINKS_PER_USER_READ_MAX = 200;
/** A redemption batch of more codes than this is a promotion, not a hand-out between friends: it links nobody. */
export const REDEMPTION_BATCH_LINK_CODES_MAX = 20;
/** How long a user's link set is cached by a gateway, ms (a new link counts at the latest this much later). */
export const LINKED_ACCOUNTS_CACHE_TTL_MS = 60_000;
/** Users whose link sets a gateway caches, at most (the oldest entry goes first). */
export const LINKED_ACCOUNTS_CACHE_USERS_MAX = 50_000;

/** Runs one SQL statement with positional parameters; the rows. Adapts pg (`viaPg`) and Prisma (`viaPrisma`). */
export type SqlRunner = (sql: string, params: readonly unknown[]) => Promise<unknown[]>;

export const viaPg =
  (c: { query(sql: string, params: unknown[]): Promise<{ rows: unknown[] }> }): SqlRunner =>
  async (sql, params) =>
    (await c.query(sql, [...params])).rows;

export const viaPrisma =
  (db: Pick<Db, "$queryRawUnsafe">): SqlRunner =>
  (sql, params) =>
    db.$queryRawUnsafe<unknown[]>(sql, ...params);

/** The keyed HMAC a personal value is kept as (43 base64url characters); `secret` is the portal's. */
export function linkValueKey(secret: string, kind: SignalKind, value: string): string {
  return createHmac("sha256", secret).update(`wellspring-account-link:v1:${kind}:${value}`).digest("base64url");
}

/**
 * Records that `userId` was seen with a signal, and links it to the accounts seen with the same one (at most
 * LINK_PEERS_PER_SIGNAL_MAX). Returns the ids it is linked to by this signal.
 */
export async function recordSignal(run: SqlRunner, signal: { userId: string; kind: SignalKind; valueKey: string }): Promise<string[]> {
  // A data-modifying WITH runs once and to completion whether or not the query reads it.
  const rows = (await run(
    `WITH seen AS (
       INSERT INTO account_signals (user_id, kind, value_key) VALUES ($1, $2, $3)
       ON CONFLICT (user_id, kind, value_key) DO UPDATE SET seen_count = account_signals.seen_count + 1, last_seen_at = now())
     SELECT user_id FROM account_signals WHERE kind = $2 AND value_key = $3 AND user_id <> $1 ORDER BY first_seen_at LIMIT $4`,
    [signal.userId, signal.kind, signal.valueKey, LINK_PEERS_PER_SIGNAL_MAX],
  )) as { user_id: string }[];
  const others = rows.map((r) => r.user_id);
  await recordLinks(run, signal.userId, others, signal.kind);
  return others;
}

/** Links `userId` with each of `others` by `kind` (both directions), or counts the link again. */
export async function recordLinks(run: SqlRunner, userId: string, others: readonly string[], kind: LinkKind): Promise<void> {
  const peers = [...new Set(others)].filter((o) => o !== userId);
  if (peers.length === 0) return;
  await run(
    `INSERT INTO account_links (user_id, linked_user_id, kind)
     SELECT a, b, $3 FROM (SELECT $1::text AS a, unnest($2::text[]) AS b UNION ALL SELECT unnest($2::text[]), $1::text) AS pairs
     ON CONFLICT (user_id, linked_user_id, kind) DO UPDATE SET seen_count = account_links.seen_count + 1, last_seen_at = now()`,
    [userId, peers, kind],
  );
}

export interface AccountLinkRow {
  linkedUserId: string;
  kind: LinkKind;
  seenCount: number;
  lastSeenAt: Date;
}

/** A user's links (at most LINKS_PER_USER_READ_MAX, the most recently seen first). */
export async function linksOf(run: SqlRunner, userId: string): Promise<AccountLinkRow[]> {
  const rows = (await run(`SELECT linked_user_id, kind, seen_count, last_seen_at FROM account_links WHERE user_id = $1 ORDER BY last_seen_at DESC LIMIT $2`, [
    userId,
    LINKS_PER_USER_READ_MAX,
  ])) as { linked_user_id: string; kind: LinkKind; seen_count: number; last_seen_at: Date }[];
  return rows.map((r) => ({ linkedUserId: r.linked_user_id, kind: r.kind, seenCount: Number(r.seen_count), lastSeenAt: r.last_seen_at }));
}

/** A user's linked accounts: per linked user id, the link kinds and how often each was seen. */
export type LinkSet = ReadonlyMap<string, ReadonlyMap<LinkKind, number>>;

/**
 * Link sets per user, cached for LINKED_ACCOUNTS_CACHE_TTL_MS (at most LINKED_ACCOUNTS_CACHE_USERS_MAX users):
 * a settlement's check is a map lookup; the database is read once per user per TTL, and concurrent misses share
 * one read.
 */
export class LinkedAccounts {
  readonly #cache = new Map<string, { at: number; links: Promise<LinkSet> }>();

  constructor(
    private readonly run: SqlRunner,
    private readonly now: () => number = Date.now,
    private readonly ttlMs = LINKED_ACCOUNTS_CACHE_TTL_MS,
  ) {}

  of(userId: string): Promise<LinkSet> {
    const now = this.now();
    const hit = this.#cache.get(userId);
    if (hit && now - hit.at < this.ttlMs) return hit.links;
    const links = linksOf(this.run, userId).then(toLinkSet);
    // A failed read is not cached: the next settlement tries again.
    links.catch(() => {
      if (this.#cache.get(userId)?.links === links) this.#cache.delete(userId);
    });
    this.#cache.delete(userId);
    if (this.#cache.size >= LINKED_ACCOUNTS_CACHE_USERS_MAX) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(userId, { at: now, links });
    return links;
  }
}

function toLinkSet(rows: AccountLinkRow[]): LinkSet {
  const set = new Map<string, Map<LinkKind, number>>();
  for (const r of rows) {
    const kinds = set.get(r.linkedUserId) ?? new Map<LinkKind, number>();
    kinds.set(r.kind, r.seenCount);
    set.set(r.linkedUserId, kinds);
  }
  return set;
}
