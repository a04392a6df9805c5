/**
 * The append-only audit trail (`audit_events`, a trigger refuses UPDATE and DELETE): who did what to what,
 * when. Every operation in `ops/` writes its event in the same transaction as its change.
 */
import type { Db } from "@wellspring/db/core";

/** Who did something: `user:<id>` (the portal), `cli:<unix user>`, `admin-api`, or `system`. */
export type Actor = string;

/** What a transaction (or the client itself) offers that writing an audit event needs. */
export type AuditWriter = Pick<Db, "auditEvent">;

/** Bigints become decimal strings: JSON has no integer wide enough for micro-units. */
const jsonSafe = (detail: Record<string, unknown>) =>
  JSON.parse(JSON.stringify(detail, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))) as object;

export async function recordAudit(tx: AuditWriter, actor: Actor, action: string, subject: string, detail: Record<string, unknown> = {}): Promise<void> {
  await tx.auditEvent.create({ data: { actor, action, subject, detail: jsonSafe(detail) } });
}
