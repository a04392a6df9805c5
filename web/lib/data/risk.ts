import "server-only";
import { publishHubEvent } from "@wellspring/db/core";
import { raiseRiskFlag, revokeKeyIn, type RiskFlagInput } from "@wellspring/gateway";
import { db } from "../db";
import { requireAdmin, type Actor } from "./actor";

export interface FlagRow {
  id: string;
  kind: string;
  subject: string;
  severity: number;
  evidence: unknown;
  status: string;
  /** Times a detector raised it while open. */
  raisedCount: number;
  createdAt: Date;
  lastRaisedAt: Date;
  decidedAt: Date | null;
  decidedBy: string | null;
  note: string | null;
}

/** Raised by detectors (ledger, trust issues); evidence holds ids and counts, never content. A repeat updates the open flag. */
export async function raiseFlag(input: RiskFlagInput): Promise<string> {
  return (await raiseRiskFlag(db(), input)).id;
}

export async function flagQueue(actor: Actor, status: "open" | "decided"): Promise<FlagRow[]> {
  requireAdmin(actor);
  return db().riskFlag.findMany({
    where: status === "open" ? { status: "open" } : { status: { not: "open" } },
    orderBy: status === "open" ? [{ severity: "desc" }, { createdAt: "asc" }] : [{ decidedAt: "desc" }],
    take: 100,
  });
}

/**
 * Decides an open flag once, with a note: approve (the activity is allowed), dismiss (false alarm) or
 * suspend (the flagged user or agent is suspended at once, on every gateway). Audited.
 */
export async function decideFlag(actor: Actor, flagId: string, decision: "approved" | "dismissed" | "suspended", note: string): Promise<"done" | "not_open" | "note_required"> {
  requireAdmin(actor);
  if (!note.trim()) return "note_required";
  return db().$transaction(async (tx) => {
    // Deciding gives the open key up: the detector's next raise opens a new flag.
    const n = await tx.riskFlag.updateMany({ where: { id: flagId, status: "open" }, data: { status: decision, openKey: null, decidedAt: new Date(), decidedBy: actor.userId, note: note.trim() } });
    if (n.count === 0) return "not_open" as const;
    const flag = await tx.riskFlag.findUniqueOrThrow({ where: { id: flagId } });
    if (decision === "suspended") {
      const [type, id] = flag.subject.split(":") as [string, string];
      if (type === "user") {
        await tx.user.update({ where: { id }, data: { status: "suspended" } });
        await publishHubEvent(tx, { kind: "user_changed", userId: id });
      }
      if (type === "agent") {
        await tx.agent.update({ where: { id }, data: { status: "suspended" } });
        await publishHubEvent(tx, { kind: "agent_changed", agentId: id });
      }
      if (type === "key") await revokeKeyIn(tx, id);
    }
    await tx.auditEvent.create({ data: { actor: `user:${actor.userId}`, action: `risk.${decision}`, subject: `flag:${flagId}`, detail: { flagSubject: flag.subject, kind: flag.kind, note: note.trim() } } });
    return "done" as const;
  });
}

export async function auditTrail(actor: Actor, subject: string): Promise<{ action: string; actor: string; createdAt: Date; detail: unknown }[]> {
  requireAdmin(actor);
  return db().auditEvent.findMany({ where: { subject }, orderBy: { createdAt: "asc" }, select: { action: true, actor: true, createdAt: true, detail: true } });
}
