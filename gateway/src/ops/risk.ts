/**
 * Deciding a risk flag: approve (the activity is allowed), dismiss (a false alarm) or suspend (the flagged user
 * or agent is suspended, the key revoked — at once, on every gateway). One transaction with its audit event;
 * deciding gives the flag's open key up, so the detector's next raise opens a new flag.
 */
import { publishHubEvent, type Db } from "@wellspring/db/core";
import { recordAudit, type Actor } from "./audit.ts";
import { revokeKeyIn } from "./keys.ts";

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
    await recordAudit(tx, actor, `risk.${decision}`, `flag:${flagId}`, { flagSubject: flag.subject, kind: flag.kind, note: note.trim() });
    return "done" as const;
  });
}
