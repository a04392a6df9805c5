/**
 * Reviewing a risk flag. Deciding it once: approve (the activity is allowed), dismiss (a false alarm) or suspend
 * (the flagged user, agent or key is suspended — at once, on every gateway). Approving or dismissing releases the
 * earnings the flag held; a suspension keeps them held. One transaction with its audit event;
 * deciding gives the flag's open key up, so the detector's next raise opens a new flag.
 * Acting from it, open or decided (`actOnFlag`): hold or release the owner's earnings, suspend or reinstate the
 * subject. `flagReview` is what the flag's page shows: evidence, subject, what is held and every action taken.
 */
import { publishHubEvent, type Db } from "@wellspring/db/core";
import { recordAudit, type Actor } from "./audit.ts";
import { flagHeld, holdAvailableEarnings, releaseFlagHolds } from "../risk/earning_holds.ts";

export type FlagDecision = "approved" | "dismissed" | "suspended";

/** What an admin may do from a flag, open or decided, as often as needed; each is audited on `flag:<id>`. */
export const FLAG_ACTIONS = ["hold_earnings", "release_earnings", "suspend_subject", "unsuspend_subject"] as const;
export type FlagAction = (typeof FLAG_ACTIONS)[number];
/** Longest note an admin writes with a decision or an action, characters. */
export const FLAG_NOTE_CHARS_MAX = 1_000;

export type FlagActionResult =
  | { outcome: "done"; detail: Record<string, unknown> }
  | { outcome: "no_flag" | "note_required" | "note_too_long" | "no_owner" | "nothing_available" | "nothing_held" | "no_change" };

type Tx = Parameters<Parameters<Db["$transaction"]>[0]>[0];

/** The subject's account whose earnings a flag may hold: the agent's owner, the user, the key's user. */
async function subjectOwner(tx: Tx, subject: string): Promise<string | null> {
  const [type, id] = subject.split(":") as [string, string];
  if (type === "agent") return (await tx.agent.findUnique({ where: { id }, select: { ownerId: true } }))?.ownerId ?? null;
  if (type === "user") return (await tx.user.findUnique({ where: { id }, select: { id: true } }))?.id ?? null;
  if (type === "key") return (await tx.virtualKey.findUnique({ where: { id }, select: { userId: true } }))?.userId ?? null;
  return null;
}

/**
 * Suspends (`to` suspended) or reinstates (`to` active) a flag's subject and tells every gateway at once: a user
 * (their keys stop), an agent (its tunnel is closed; reinstating lets it reconnect) or a key. Only between
 * active and suspended: a revoked key or agent stays revoked, a paused agent is the owner's. False: no change.
 */
async function setSubjectStatus(tx: Tx, subject: string, to: "active" | "suspended"): Promise<boolean> {
  const [type, id] = subject.split(":") as [string, string];
  const from = to === "active" ? "suspended" : "active";
  if (type === "user") {
    const n = await tx.user.updateMany({ where: { id, status: from }, data: { status: to } });
    if (n.count > 0) await publishHubEvent(tx, { kind: "user_changed", userId: id });
    return n.count > 0;
  }
  if (type === "agent") {
    const n = await tx.agent.updateMany({ where: { id, status: to === "active" ? "suspended" : { in: ["active", "paused"] } }, data: { status: to } });
    if (n.count > 0) await publishHubEvent(tx, { kind: "agent_changed", agentId: id });
    return n.count > 0;
  }
  if (type === "key") {
    const n = await tx.virtualKey.updateMany({ where: { id, status: from }, data: { status: to } });
    if (n.count > 0) await publishHubEvent(tx, { kind: "key_changed", keyId: id });
    return n.count > 0;
  }
  return false;
}

/**
 * An admin's action from a flag (open or decided), with a note, in one transaction with its audit event
 * (`risk.<action>` on `flag:<id>`: actor, note, what changed, UTC time):
 * - hold_earnings: holds everything the subject's owner may request for payout now (`holdAvailableEarnings`);
 * - release_earnings: releases every hold the flag placed (a detector's per-request holds and admins' holds);
 * - suspend_subject / unsuspend_subject: the user, agent or key, on every gateway at once.
 */
export async function actOnFlag(db: Db, actor: Actor, flagId: string, action: FlagAction, note: string): Promise<FlagActionResult> {
  const trimmed = note.trim();
  if (!trimmed) return { outcome: "note_required" };
  if (trimmed.length > FLAG_NOTE_CHARS_MAX) return { outcome: "note_too_long" };
  return db.$transaction(async (tx) => {
    // Locks the flag row: two admins acting on one flag act one after the other.
    const found = await tx.$queryRaw<{ subject: string; kind: string }[]>`SELECT subject, kind FROM risk_flags WHERE id = ${flagId} FOR UPDATE`;
    const flag = found[0];
    if (!flag) return { outcome: "no_flag" as const };
    let detail: Record<string, unknown>;
    if (action === "hold_earnings") {
      const ownerId = await subjectOwner(tx, flag.subject);
      if (!ownerId) return { outcome: "no_owner" as const };
      const heldMicros = await holdAvailableEarnings(tx, ownerId, flagId, actor);
      if (heldMicros === 0n) return { outcome: "nothing_available" as const };
      detail = { ownerId, heldMicros };
    } else if (action === "release_earnings") {
      const held = await flagHeld(tx, flagId);
      if (held.holds === 0) return { outcome: "nothing_held" as const };
      await releaseFlagHolds(tx, flagId, actor);
      detail = { releasedMicros: held.amountMicros, releasedHolds: held.holds };
    } else {
      const to = action === "suspend_subject" ? "suspended" : "active";
      if (!(await setSubjectStatus(tx, flag.subject, to))) return { outcome: "no_change" as const };
      detail = { status: to };
    }
    await recordAudit(tx, actor, `risk.${action}`, `flag:${flagId}`, { flagSubject: flag.subject, kind: flag.kind, note: trimmed, ...detail });
    return { outcome: "done" as const, detail };
  });
}

export async function decideFlag(
  db: Db,
  actor: Actor,
  flagId: string,
  decision: FlagDecision,
  note: string,
  decidedBy: string,
): Promise<"done" | "not_open" | "note_required"> {
  if (!note.trim()) return "note_required";
  return db.$transaction(async (tx) => {
    const n = await tx.riskFlag.updateMany({
      where: { id: flagId, status: "open" },
      data: { status: decision, openKey: null, decidedAt: new Date(), decidedBy, note: note.trim() },
    });
    if (n.count === 0) return "not_open" as const;
    const flag = await tx.riskFlag.findUniqueOrThrow({ where: { id: flagId } });
    // The earnings the flag held: released once the activity is allowed or a false alarm; kept for a suspension.
    const released = decision === "suspended" ? 0 : await releaseFlagHolds(tx, flagId, decidedBy);
    if (decision === "suspended") await setSubjectStatus(tx, flag.subject, "suspended");
    await recordAudit(tx, actor, `risk.${decision}`, `flag:${flagId}`, {
      flagSubject: flag.subject,
      kind: flag.kind,
      note: note.trim(),
      releasedHolds: released,
    });
    return "done" as const;
  });
}

/** Flags that are open (highest severity first, oldest first) or decided (latest first), at most `limit`. */
export async function listRiskFlags(db: Db, status: "open" | "decided", limit = 100) {
  return db.riskFlag.findMany({
    where: status === "open" ? { status: "open" } : { status: { not: "open" } },
    orderBy: status === "open" ? [{ severity: "desc" }, { createdAt: "asc" }] : [{ decidedAt: "desc" }],
    take: limit,
  });
}

export interface FlagReview {
  flag: Awaited<ReturnType<Db["riskFlag"]["findUniqueOrThrow"]>>;
  /** The subject's state now (user / agent / key status), null if it no longer exists. */
  subjectStatus: string | null;
  /** The account whose earnings the flag may hold, and what the flag holds now. */
  ownerId: string | null;
  held: { amountMicros: bigint; holds: number };
  /** Decisions and actions on the flag, oldest first (the audit trail of `flag:<id>`). */
  actions: { action: string; actor: string; note: string | null; detail: Record<string, unknown>; at: Date }[];
}

/** Longest history a flag's page shows, audit events. */
export const FLAG_REVIEW_ACTIONS_MAX = 200;

export async function flagReview(db: Db, flagId: string): Promise<FlagReview | null> {
  const flag = await db.riskFlag.findUnique({ where: { id: flagId } });
  if (!flag) return null;
  const [type, id] = flag.subject.split(":") as [string, string];
  const status =
    type === "user"
      ? (await db.user.findUnique({ where: { id }, select: { status: true } }))?.status
      : type === "agent"
        ? (await db.agent.findUnique({ where: { id }, select: { status: true } }))?.status
        : type === "key"
          ? (await db.virtualKey.findUnique({ where: { id }, select: { status: true } }))?.status
          : undefined;
  const [ownerId, held, events] = await Promise.all([
    db.$transaction((tx) => subjectOwner(tx, flag.subject)),
    flagHeld(db, flagId),
    db.auditEvent.findMany({ where: { subject: `flag:${flagId}` }, orderBy: { createdAt: "asc" }, take: FLAG_REVIEW_ACTIONS_MAX }),
  ]);
  return {
    flag,
    subjectStatus: status ?? null,
    ownerId,
    held,
    actions: events.map((e) => {
      const detail = (typeof e.detail === "object" && e.detail !== null && !Array.isArray(e.detail) ? e.detail : {}) as Record<string, unknown>;
      return { action: e.action, actor: e.actor, note: typeof detail.note === "string" ? detail.note : null, detail, at: e.createdAt };
    }),
  };
}
