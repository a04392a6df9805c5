/**
 * Virtual keys: `sk-ws-` + 40 base32 characters. Only the SHA-256 is stored; the secret is shown once.
 * Verification goes through a short-lived cache so a burst of calls costs one database read.
 */
import { createHash } from "node:crypto";
import { newId, randomToken, type Db } from "@wellspring/db/core";

export const KEY_PREFIX = "sk-ws-";
const KEY_BODY_CHARS = 40;
const KEY_PATTERN = /^sk-ws-[0-9a-z]{40}$/;
/** How long a verified (or refused) key stays cached; revocation takes effect within this time. */
export const KEY_CACHE_TTL_MS = 5_000;
/** Cache entries kept at most; the oldest go first. */
export const KEY_CACHE_ENTRIES_MAX = 50_000;
/** `lastUsedAt` is written at most once per this interval per key. */
const LAST_USED_WRITE_INTERVAL_MS = 60_000;

export function hashKey(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

export interface Principal {
  keyId: string;
  userId: string;
  allowedModels: string[];
  expiresAt: Date | null;
  /** The user's plan; null = the default plan. */
  planId: string | null;
}

export type KeyCheck = { ok: true; principal: Principal } | { ok: false; reason: "invalid" | "expired" | "suspended" };

export async function issueKey(db: Db, userId: string, name: string, opts: { allowedModels?: string[]; expiresAt?: Date | null } = {}): Promise<{ id: string; secret: string }> {
  const secret = `${KEY_PREFIX}${randomToken(KEY_BODY_CHARS)}`;
  const id = newId("key");
  await db.virtualKey.create({
    data: {
      id,
      userId,
      name,
      prefix: secret.slice(0, KEY_PREFIX.length + 6),
      hash: hashKey(secret),
      allowedModels: opts.allowedModels ?? [],
      expiresAt: opts.expiresAt ?? null,
    },
  });
  return { id, secret };
}

export class KeyVerifier {
  readonly #cache = new Map<string, { at: number; check: KeyCheck }>();
  readonly #lastUsedWrite = new Map<string, number>();

  constructor(private readonly db: Db) {}

  async verify(secret: string): Promise<KeyCheck> {
    if (!KEY_PATTERN.test(secret)) return { ok: false, reason: "invalid" };
    const hash = hashKey(secret);
    const now = Date.now();
    const cached = this.#cache.get(hash);
    let check: KeyCheck;
    if (cached && now - cached.at < KEY_CACHE_TTL_MS) {
      check = cached.check;
    } else {
      check = await this.#load(hash);
      if (this.#cache.size >= KEY_CACHE_ENTRIES_MAX) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(hash, { at: now, check });
    }
    if (check.ok && check.principal.expiresAt && check.principal.expiresAt.getTime() <= now) return { ok: false, reason: "expired" };
    if (check.ok) this.#touch(check.principal.keyId, now);
    return check;
  }

  async #load(hash: string): Promise<KeyCheck> {
    const key = await this.db.virtualKey.findUnique({ where: { hash }, include: { user: { select: { status: true, planId: true } } } });
    if (!key || key.status !== "active") return { ok: false, reason: "invalid" };
    if (key.user.status !== "active") return { ok: false, reason: "suspended" };
    return { ok: true, principal: { keyId: key.id, userId: key.userId, allowedModels: key.allowedModels, expiresAt: key.expiresAt, planId: key.user.planId } };
  }

  #touch(keyId: string, now: number): void {
    const last = this.#lastUsedWrite.get(keyId) ?? 0;
    if (now - last < LAST_USED_WRITE_INTERVAL_MS) return;
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
