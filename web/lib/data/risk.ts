import "server-only";
import {
  actOnFlag,
  decideFlag as decide,
  flagReview,
  listRiskFlags,
  raiseRiskFlag,
  type FlagAction,
  type FlagActionResult,
  type FlagDecision,
  type FlagReview,
  type RiskFlagInput,
} from "@wellspring/gateway";
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
  return listRiskFlags(db(), status);
}

/**
 * Decides an open flag once, with a note: approve (the activity is allowed), dismiss (false alarm) or
 * suspend (the flagged user or agent is suspended at once, on every gateway). Audited.
 */
export async function decideFlag(actor: Actor, flagId: string, decision: FlagDecision, note: string): Promise<"done" | "not_open" | "note_required"> {
  requireAdmin(actor);
  return decide(db(), `user:${actor.userId}`, flagId, decision, note, actor.userId);
}

export async function auditTrail(actor: Actor, subject: string): Promise<{ action: string; actor: string; createdAt: Date; detail: unknown }[]> {
  requireAdmin(actor);
  return db().auditEvent.findMany({ where: { subject }, orderBy: { createdAt: "asc" }, select: { action: true, actor: true, createdAt: true, detail: true } });
}

/** A flag's page: its evidence, its subject's state, what it holds, and every decision and action on it. Admins only. */
export async function reviewFlag(actor: Actor, flagId: string): Promise<FlagReview | null> {
  requireAdmin(actor);
  return flagReview(db(), flagId);
}

/**
 * From a flag (open or decided), with a note: hold the owner's available earnings, release what the flag holds,
 * suspend or reinstate its user, agent or key (every gateway at once). Admins only; audited with actor, note, time.
 */
export async function actOnFlagAs(actor: Actor, flagId: string, action: FlagAction, note: string): Promise<FlagActionResult> {
  requireAdmin(actor);
  return actOnFlag(db(), `user:${actor.userId}`, flagId, action, note);
}
