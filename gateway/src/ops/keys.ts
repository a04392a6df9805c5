/**
 * Virtual keys: `sk-ws-` + 40 base32 characters. Only the SHA-256 is stored; the secret is shown once.
 * Issuing or revoking a key is one transaction with its audit event and the hub event every gateway's key
 * filter and cache follow at once. The CLI, the portal and the risk review all come through here.
 */
import { createHash } from "node:crypto";
import { newId, publishHubEvent, randomToken, type Db } from "@wellspring/db/core";
import { recordAudit, type Actor, type AuditWriter } from "./audit.ts";

export const KEY_PREFIX = "sk-ws-";
const KEY_BODY_CHARS = 40;
export const KEY_PATTERN = /^sk-ws-[0-9a-z]{40}$/;

export function hashKey(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

export interface KeyOptions {
  /** Models the key may use; empty = all. */
  allowedModels?: string[];
  expiresAt?: Date | null;
  rpmLimit?: number | null;
  tpmLimit?: number | null;
  concurrencyLimit?: number | null;
  monthlyBudgetMicros?: bigint | null;
  /** Owners (user ids) whose agents may serve the key; empty = any. */
  allowedOwnerIds?: string[];
  /** Lowest agent tier that may serve the key (S above A); null = any. */
  minAgentTier?: "S" | "A" | null;
}

/** What a transaction (or the client itself) offers that key changes need. */
type KeyWriter = Pick<Db, "virtualKey" | "$executeRaw"> & AuditWriter;

/** Issues a key for `userId`: the secret is returned once and never stored. */
export async function issueKey(
  db: Db,
  userId: string,
  name: string,
  opts: KeyOptions = {},
  actor: Actor = `user:${userId}`,
): Promise<{ id: string; secret: string }> {
  const secret = `${KEY_PREFIX}${randomToken(KEY_BODY_CHARS)}`;
  const id = newId("key");
  const hash = hashKey(secret);
  await db.$transaction(async (tx) => {
    await tx.virtualKey.create({
      data: {
        id,
        userId,
        name,
        prefix: secret.slice(0, KEY_PREFIX.length + 6),
        hash,
        allowedModels: opts.allowedModels ?? [],
        expiresAt: opts.expiresAt ?? null,
        rpmLimit: opts.rpmLimit ?? null,
        tpmLimit: opts.tpmLimit ?? null,
        concurrencyLimit: opts.concurrencyLimit ?? null,
        monthlyBudgetMicros: opts.monthlyBudgetMicros ?? null,
        allowedOwnerIds: opts.allowedOwnerIds ?? [],
        minAgentTier: opts.minAgentTier ?? null,
      },
    });
    await recordAudit(tx, actor, "key.created", `key:${id}`, { userId, name });
    await publishHubEvent(tx, { kind: "key_created", keyId: id, hashPrefix: hash.slice(0, 16) });
  });
  return { id, secret };
}

/**
 * Revokes an active key (only the given user's, when `userId` is set) and tells every gateway. Pass the
 * transaction client to revoke inside a larger change. False when there was no such active key.
 */
export async function revokeKeyIn(tx: KeyWriter, keyId: string, opts: { userId?: string; actor?: Actor } = {}): Promise<boolean> {
  const n = await tx.virtualKey.updateMany({
    where: { id: keyId, status: { in: ["active", "suspended"] }, ...(opts.userId ? { userId: opts.userId } : {}) },
    data: { status: "revoked", revokedAt: new Date() },
  });
  if (n.count === 0) return false;
  await recordAudit(tx, opts.actor ?? (opts.userId ? `user:${opts.userId}` : "system"), "key.revoked", `key:${keyId}`, {});
  await publishHubEvent(tx, { kind: "key_changed", keyId });
  return true;
}

/** Which agents may serve a key: their owners (user ids; empty = any) and the lowest tier (S above A; null = any). */
export interface KeyRestriction {
  allowedOwnerIds: string[];
  minAgentTier: "S" | "A" | null;
}

/**
 * Changes which agents may serve an active key (only the given user's, when `userId` is set), with its audit
 * event and the `key_changed` hub event that drops the key from every gateway's cache, so the next request
 * routes under the new restriction. False when there was no such active key.
 */
export async function restrictKey(db: Db, keyId: string, restriction: KeyRestriction, opts: { userId?: string; actor?: Actor } = {}): Promise<boolean> {
  return db.$transaction(async (tx) => {
    const n = await tx.virtualKey.updateMany({
      where: { id: keyId, status: "active", ...(opts.userId ? { userId: opts.userId } : {}) },
      data: { allowedOwnerIds: restriction.allowedOwnerIds, minAgentTier: restriction.minAgentTier },
    });
    if (n.count === 0) return false;
    await recordAudit(tx, opts.actor ?? (opts.userId ? `user:${opts.userId}` : "system"), "key.restricted", `key:${keyId}`, {
      owners: restriction.allowedOwnerIds.length,
      minTier: restriction.minAgentTier,
    });
    await publishHubEvent(tx, { kind: "key_changed", keyId });
    return true;
  });
}

export async function revokeKey(db: Db, keyId: string, opts: { userId?: string; actor?: Actor } = {}): Promise<boolean> {
  return db.$transaction((tx) => revokeKeyIn(tx, keyId, opts));
}
