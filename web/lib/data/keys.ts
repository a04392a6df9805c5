import "server-only";
import { issueKey, restrictKey, revokeKey as revokeKeyForUser, unknownModelNames } from "@wellspring/gateway";
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
  /** Emails of the owners whose agents may serve the key; empty = any owner. */
  allowedOwners: string[];
  /** Lowest agent tier that may serve the key (S above A); null = any. */
  minAgentTier: AgentTierChoice;
  /** Current use against the limits, from the request records: the last minute and this UTC month. */
  use: { requestsLastMinute: number; tokensLastMinute: number; chargedThisMonthMicros: bigint };
}

/** Keys at most per account. */
export const KEYS_PER_USER_MAX = 100;
/** Owners a key may be restricted to, at most (emails). */
export const KEY_OWNERS_MAX = 20;

export type AgentTierChoice = "S" | "A" | null;

/** Which agents may serve a key, as the user names them: owners by email, and the lowest tier. */
export interface KeyRestrictionInput {
  ownerEmails: string[];
  minAgentTier: AgentTierChoice;
}

/** A key's input refused by what the database holds (e.g. an email that is no agent owner's), for one field. */
export class KeyInputError extends Error {
  constructor(
    readonly field: "allowedOwners",
    message: string,
  ) {
    super(message);
  }
}

export async function listKeys(actor: Actor): Promise<KeyRow[]> {
  const now = new Date();
  const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const minuteAgo = new Date(now.getTime() - 60_000);
  const [rows, recent, month] = await Promise.all([
    listKeyRows(actor),
    db().requestRecord.groupBy({
      by: ["keyId"],
      where: { userId: actor.userId, startedAt: { gte: minuteAgo } },
      _count: { _all: true },
      _sum: { inputTokens: true, outputTokens: true },
    }),
    db().requestRecord.groupBy({ by: ["keyId"], where: { userId: actor.userId, startedAt: { gte: monthStart } }, _sum: { userChargeMicros: true } }),
  ]);
  const ownerIds = [...new Set(rows.flatMap((k) => k.allowedOwnerIds))];
  const owners = ownerIds.length ? await db().user.findMany({ where: { id: { in: ownerIds } }, select: { id: true, email: true } }) : [];
  const emailById = new Map(owners.map((o) => [o.id, o.email]));
  const keys = rows.map(({ allowedOwnerIds, minAgentTier, ...k }) => ({
    ...k,
    allowedOwners: allowedOwnerIds.map((id) => emailById.get(id) ?? "(deleted account)"),
    minAgentTier: minAgentTier === "S" || minAgentTier === "A" ? minAgentTier : null,
  }));
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
      allowedOwnerIds: true,
      minAgentTier: true,
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
  /** Owners (emails) whose agents may serve the key; absent or empty = any. */
  ownerEmails?: string[];
  /** Lowest agent tier that may serve the key; absent or null = any. */
  minAgentTier?: AgentTierChoice;
}

export type KeyErrors = Partial<Record<Exclude<keyof NewKey, "ownerEmails"> | "allowedOwners" | "form", string>>;

const EMAIL = /^[^@\s]+@[^@\s]+$/;

/** The restriction fields of a key form: owners' emails (comma or space separated) and the tier choice ("", "A", "S"). */
export function validateRestriction(raw: {
  owners?: string;
  minTier?: string;
}): { ok: true; restriction: KeyRestrictionInput } | { ok: false; errors: KeyErrors } {
  const errors: KeyErrors = {};
  const ownerEmails = [
    ...new Set(
      (raw.owners ?? "")
        .split(/[\s,]+/)
        .map((e) => e.trim().toLowerCase())
        .filter(Boolean),
    ),
  ];
  const bad = ownerEmails.find((e) => e.length > 254 || !EMAIL.test(e));
  if (bad !== undefined) errors.allowedOwners = `“${bad.slice(0, 60)}” is not an email address. Name owners by the email of their account.`;
  else if (ownerEmails.length > KEY_OWNERS_MAX) errors.allowedOwners = `At most ${KEY_OWNERS_MAX} owners per key.`;
  const tier = (raw.minTier ?? "").trim();
  if (tier !== "" && tier !== "A" && tier !== "S") errors.minAgentTier = "Minimum tier: any, A or S.";
  if (Object.keys(errors).length) return { ok: false, errors };
  return { ok: true, restriction: { ownerEmails, minAgentTier: tier === "A" || tier === "S" ? tier : null } };
}

export function validateNewKey(raw: {
  name: string;
  models: string;
  rpm: string;
  tpm?: string;
  concurrency?: string;
  budgetUsd: string;
  expires: string;
  owners?: string;
  minTier?: string;
}): { ok: true; key: NewKey } | { ok: false; errors: KeyErrors } {
  const restriction = validateRestriction(raw);
  const errors: KeyErrors = restriction.ok ? {} : { ...restriction.errors };
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
  if (!restriction.ok || Object.keys(errors).length) return { ok: false, errors };
  return { ok: true, key: { name, allowedModels, rpmLimit, tpmLimit, concurrencyLimit, monthlyBudgetMicros, expiresAt, ...restriction.restriction } };
}

/** Names among `models` that are neither in the official price table nor reported by an agent. */
export async function unknownModels(models: readonly string[]): Promise<string[]> {
  return unknownModelNames(db(), models);
}

/**
 * The user ids of the agent owners named by email. An email that is no agent owner's is refused (a key
 * restricted to it could never be served), with the same words whether or not an account has that email.
 */
async function ownerIds(emails: readonly string[]): Promise<string[]> {
  if (emails.length === 0) return [];
  const owners = await db().user.findMany({ where: { email: { in: [...emails] }, isOwner: true }, select: { id: true, email: true } });
  const idByEmail = new Map(owners.map((o) => [o.email.toLowerCase(), o.id]));
  const missing = emails.filter((e) => !idByEmail.has(e));
  if (missing.length) throw new KeyInputError("allowedOwners", `No agent owner has the email ${missing.map((e) => `“${e}”`).join(", ")}.`);
  return emails.map((e) => idByEmail.get(e)!);
}

/** Creates a key for the actor; the secret is returned once and never stored. */
export async function createKey(actor: Actor, key: NewKey): Promise<{ id: string; secret: string }> {
  const count = await db().virtualKey.count({ where: { userId: actor.userId, status: { in: ["active", "suspended"] } } });
  if (count >= KEYS_PER_USER_MAX) throw new Error(`You have ${KEYS_PER_USER_MAX} active keys; revoke one first.`);
  const allowedOwnerIds = await ownerIds(key.ownerEmails ?? []);
  return issueKey(db(), actor.userId, key.name, {
    allowedOwnerIds,
    minAgentTier: key.minAgentTier ?? null,
    allowedModels: key.allowedModels,
    expiresAt: key.expiresAt,
    rpmLimit: key.rpmLimit,
    tpmLimit: key.tpmLimit,
    concurrencyLimit: key.concurrencyLimit,
    monthlyBudgetMicros: key.monthlyBudgetMicros,
  });
}

/**
 * Changes which agents may serve one of the actor's active keys; every gateway applies it to the next request.
 * Another account's key id (or a revoked key) changes nothing and reports not found (false).
 */
export async function updateKeyRestriction(actor: Actor, keyId: string, restriction: KeyRestrictionInput): Promise<boolean> {
  const allowedOwnerIds = await ownerIds(restriction.ownerEmails);
  return restrictKey(db(), keyId, { allowedOwnerIds, minAgentTier: restriction.minAgentTier }, { userId: actor.userId });
}

/** Revokes one of the actor's keys; another account's key id changes nothing and reports not found. */
export async function revokeKey(actor: Actor, keyId: string): Promise<boolean> {
  return revokeKeyForUser(db(), keyId, { userId: actor.userId });
}
