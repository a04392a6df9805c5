import "server-only";
import { issueKey, revokeKey as revokeKeyForUser, unknownModelNames } from "@wellspring/gateway";
import { db } from "../db";
import { parseUsd } from "../format";
import type { Actor } from "./actor";

export interface KeyRow {
  id: string;
  name: string;
  prefix: string;
  /** suspended: an administrator stopped it from a risk review (calls are refused with key_suspended). */
  status: "active" | "suspended" | "revoked";
  allowedModels: string[];
  rpmLimit: number | null;
  tpmLimit: number | null;
  concurrencyLimit: number | null;
  monthlyBudgetMicros: bigint | null;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  createdAt: Date;
  /** Current use against the limits, from the request records: the last minute and this UTC month. */
  use: { requestsLastMinute: number; tokensLastMinute: number; chargedThisMonthMicros: bigint };
}

/** Keys at most per account. */
export const KEYS_PER_USER_MAX = 100;

export async function listKeys(actor: Actor): Promise<KeyRow[]> {
  const now = new Date();
  const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const minuteAgo = new Date(now.getTime() - 60_000);
  const [keys, recent, month] = await Promise.all([
    listKeyRows(actor),
    db().requestRecord.groupBy({
      by: ["keyId"],
      where: { userId: actor.userId, startedAt: { gte: minuteAgo } },
      _count: { _all: true },
      _sum: { inputTokens: true, outputTokens: true },
    }),
    db().requestRecord.groupBy({ by: ["keyId"], where: { userId: actor.userId, startedAt: { gte: monthStart } }, _sum: { userChargeMicros: true } }),
  ]);
  const recentBy = new Map(recent.map((r) => [r.keyId, r]));
  const monthBy = new Map(month.map((r) => [r.keyId, r._sum.userChargeMicros ?? 0n]));
  return keys.map((k) => {
    const r = recentBy.get(k.id);
    return {
      ...k,
      use: {
        requestsLastMinute: r?._count._all ?? 0,
        tokensLastMinute: (r?._sum.inputTokens ?? 0) + (r?._sum.outputTokens ?? 0),
        chargedThisMonthMicros: monthBy.get(k.id) ?? 0n,
      },
    };
  });
}

function listKeyRows(actor: Actor) {
  return db().virtualKey.findMany({
    where: { userId: actor.userId },
    orderBy: [{ status: "asc" }, { createdAt: "desc" }],
    select: {
      id: true,
      name: true,
      prefix: true,
      status: true,
      allowedModels: true,
      rpmLimit: true,
      tpmLimit: true,
      concurrencyLimit: true,
      monthlyBudgetMicros: true,
      expiresAt: true,
      lastUsedAt: true,
      createdAt: true,
    },
  });
}

export interface NewKey {
  name: string;
  allowedModels: string[];
  rpmLimit: number | null;
  tpmLimit: number | null;
  concurrencyLimit: number | null;
  monthlyBudgetMicros: bigint | null;
  expiresAt: Date | null;
}

export type KeyErrors = Partial<Record<keyof NewKey | "form", string>>;

export function validateNewKey(raw: {
  name: string;
  models: string;
  rpm: string;
  tpm?: string;
  concurrency?: string;
  budgetUsd: string;
  expires: string;
}): { ok: true; key: NewKey } | { ok: false; errors: KeyErrors } {
  const errors: KeyErrors = {};
  const name = raw.name.trim();
  if (!name || name.length > 60) errors.name = "Give the key a name of 1 to 60 characters.";
  const allowedModels = raw.models
    .split(/[\s,]+/)
    .map((m) => m.trim())
    .filter(Boolean);
  if (allowedModels.some((m) => !/^[\w.:/@-]{1,256}$/.test(m))) errors.allowedModels = "Model names are letters, digits and . : / @ - _ only.";
  let rpmLimit: number | null = null;
  if (raw.rpm.trim()) {
    rpmLimit = Number(raw.rpm);
    if (!Number.isInteger(rpmLimit) || rpmLimit < 1 || rpmLimit > 1_000_000) errors.rpmLimit = "Requests per minute: a whole number from 1 to 1,000,000.";
  }
  const whole = (v: string | undefined, max: number): number | null | "bad" => {
    if (!v?.trim()) return null;
    const n = Number(v);
    return Number.isInteger(n) && n >= 1 && n <= max ? n : "bad";
  };
  const tpm = whole(raw.tpm, 1_000_000_000);
  if (tpm === "bad") errors.tpmLimit = "Tokens per minute: a whole number from 1 to 1,000,000,000.";
  const concurrency = whole(raw.concurrency, 100_000);
  if (concurrency === "bad") errors.concurrencyLimit = "Requests at once: a whole number from 1 to 100,000.";
  const tpmLimit = tpm === "bad" ? null : tpm;
  const concurrencyLimit = concurrency === "bad" ? null : concurrency;
  let monthlyBudgetMicros: bigint | null = null;
  if (raw.budgetUsd.trim()) {
    monthlyBudgetMicros = parseUsd(raw.budgetUsd);
    if (monthlyBudgetMicros === null) errors.monthlyBudgetMicros = "Monthly budget in dollars, e.g. 25 or 25.50.";
  }
  let expiresAt: Date | null = null;
  if (raw.expires.trim()) {
    expiresAt = new Date(`${raw.expires.trim()}T00:00:00Z`);
    if (Number.isNaN(expiresAt.getTime()) || expiresAt.getTime() <= Date.now()) errors.expiresAt = "Expiry must be a future date (UTC).";
  }
  if (Object.keys(errors).length) return { ok: false, errors };
  return { ok: true, key: { name, allowedModels, rpmLimit, tpmLimit, concurrencyLimit, monthlyBudgetMicros, expiresAt } };
}

/** Names among `models` that are neither in the official price table nor reported by an agent. */
export async function unknownModels(models: readonly string[]): Promise<string[]> {
  return unknownModelNames(db(), models);
}

/** Creates a key for the actor; the secret is returned once and never stored. */
export async function createKey(actor: Actor, key: NewKey): Promise<{ id: string; secret: string }> {
  const count = await db().virtualKey.count({ where: { userId: actor.userId, status: { in: ["active", "suspended"] } } });
  if (count >= KEYS_PER_USER_MAX) throw new Error(`You have ${KEYS_PER_USER_MAX} active keys; revoke one first.`);
  return issueKey(db(), actor.userId, key.name, {
    allowedModels: key.allowedModels,
    expiresAt: key.expiresAt,
    rpmLimit: key.rpmLimit,
    tpmLimit: key.tpmLimit,
    concurrencyLimit: key.concurrencyLimit,
    monthlyBudgetMicros: key.monthlyBudgetMicros,
  });
}

/** Revokes one of the actor's keys; another account's key id changes nothing and reports not found. */
export async function revokeKey(actor: Actor, keyId: string): Promise<boolean> {
  return revokeKeyForUser(db(), keyId, { userId: actor.userId });
}
