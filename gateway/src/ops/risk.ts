/**
 * Deciding a risk flag: approve (the activity is allowed), dismiss (a false alarm) or suspend (the flagged user
 * or agent is suspended, the key revoked — at once, on every gateway). Approving or dismissing releases the
 * earnings the flag held; a suspension keeps them held. One transaction with its audit event;
 * deciding gives the flag's open key up, so the detector's next raise opens a new flag.
 */
import { publishHubEvent, type Db } from "@wellspring/db/core";
import { recordAudit, type Actor } from "./audit.ts";
import { revokeKeyIn } from "./keys.ts";
import { releaseFlagHolds } from "../risk/earning_holds.ts";

export type FlagDecision = "approved" | "dismissed" | "suspended";

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
      if (type === "key") await revokeKeyIn(tx, id, { actor });
    }
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
