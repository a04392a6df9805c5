/**
 * Agents, as admins and owners change them: tier (S, A, discount), status (active, paused, suspended,
 * revoked) and the owner's discount-lane opt-in. Each change is one transaction with its audit event and the
 * hub event every gateway applies at once (a suspended or revoked agent's tunnel is closed).
 */
import { publishHubEvent, type Db } from "@wellspring/db/core";
import { recordAudit, type Actor } from "./audit.ts";

export type AgentTier = "S" | "A" | "discount";

export interface AgentChange {
  tier?: AgentTier;
  status?: "active" | "suspended";
  discountLane?: boolean;
}

/** An admin's change to an agent (not a revoked one). False when there is no such agent. */
export async function changeAgent(db: Db, actor: Actor, agentId: string, change: AgentChange): Promise<boolean> {
  if (Object.keys(change).length === 0) return false;
  return db.$transaction(async (tx) => {
    // An admin setting the lane directly also settles any pending request for it.
    const data = change.discountLane === undefined ? change : { ...change, discountLaneRequestedAt: null };
    const n = await tx.agent.updateMany({ where: { id: agentId, status: { not: "revoked" } }, data });
    if (n.count === 0) return false;
    await recordAudit(tx, actor, "agent.updated", `agent:${agentId}`, { ...change });
    await publishHubEvent(tx, { kind: "agent_changed", agentId });
    return true;
  });
}

/** The owner's change is refused: the agent was suspended or revoked by an administrator. */
export class AgentLockedError extends Error {
  constructor(readonly status: string) {
    super(`This agent is ${status} by an administrator.`);
    this.name = "AgentLockedError";
  }
}

/**
 * The owner's own switches for one of their agents: pause (no new requests) and the discount lane. Joining the
 * lane is a request an administrator approves or refuses (`decideDiscountLane`); leaving it (or withdrawing the
 * request) takes effect at once. An agent an admin suspended or revoked cannot be resumed by its owner
 * (AgentLockedError). False when `ownerId` has no such agent.
 */
export async function changeOwnAgent(db: Db, ownerId: string, agentId: string, change: { paused?: boolean; discountLane?: boolean }): Promise<boolean> {
  return db.$transaction(async (tx) => {
    const agent = await tx.agent.findFirst({ where: { id: agentId, ownerId } });
    if (!agent) return false;
    const data: { status?: "active" | "paused"; discountLane?: boolean; discountLaneRequestedAt?: Date | null } = {};
    if (change.paused !== undefined) {
      if (agent.status !== "active" && agent.status !== "paused") throw new AgentLockedError(agent.status);
      data.status = change.paused ? "paused" : "active";
    }
    if (change.discountLane === true && !agent.discountLane && !agent.discountLaneRequestedAt) data.discountLaneRequestedAt = new Date();
    if (change.discountLane === false) Object.assign(data, { discountLane: false, discountLaneRequestedAt: null });
    await tx.agent.update({ where: { id: agent.id }, data });
    await recordAudit(tx, `user:${ownerId}`, "agent.owner_updated", `agent:${agent.id}`, data);
    await publishHubEvent(tx, { kind: "agent_changed", agentId: agent.id });
    return true;
  });
}

/** Longest note an admin writes when deciding a discount-lane request, characters. */
export const DISCOUNT_LANE_NOTE_CHARS_MAX = 1_000;

/**
 * An admin approves (the agent joins the lane: routing priority at the discount share) or refuses an owner's
 * pending discount-lane request, with a note; audited (`agent.discount_lane_approved` / `_refused`), and every
 * gateway follows at once.
 */
export async function decideDiscountLane(
  db: Db,
  actor: Actor,
  agentId: string,
  approve: boolean,
  note: string,
): Promise<"done" | "no_request" | "note_required" | "note_too_long"> {
  const trimmed = note.trim();
  if (!trimmed) return "note_required";
  if (trimmed.length > DISCOUNT_LANE_NOTE_CHARS_MAX) return "note_too_long";
  return db.$transaction(async (tx) => {
    const n = await tx.agent.updateMany({
      where: { id: agentId, discountLaneRequestedAt: { not: null }, status: { not: "revoked" } },
      data: approve ? { discountLane: true, discountLaneRequestedAt: null } : { discountLaneRequestedAt: null },
    });
    if (n.count === 0) return "no_request" as const;
    await recordAudit(tx, actor, `agent.discount_lane_${approve ? "approved" : "refused"}`, `agent:${agentId}`, { note: trimmed });
    await publishHubEvent(tx, { kind: "agent_changed", agentId });
    return "done" as const;
  });
}

/** Agents whose owners asked to join the discount lane, oldest request first. */
export async function discountLaneRequests(db: Db, limit = 100) {
  return db.agent.findMany({
    where: { discountLaneRequestedAt: { not: null }, status: { not: "revoked" } },
    orderBy: { discountLaneRequestedAt: "asc" },
    take: limit,
    select: { id: true, name: true, ownerId: true, tier: true, status: true, discountLaneRequestedAt: true, owner: { select: { email: true } } },
  });
}

/** The latest decision on an agent's discount-lane request (what its owner is told), or null. */
export async function lastDiscountLaneDecision(db: Db, agentIds: string[]): Promise<Map<string, { approved: boolean; note: string | null; at: Date }>> {
  const events = await db.auditEvent.findMany({
    where: { subject: { in: agentIds.map((id) => `agent:${id}`) }, action: { in: ["agent.discount_lane_approved", "agent.discount_lane_refused"] } },
    orderBy: { createdAt: "desc" },
  });
  const out = new Map<string, { approved: boolean; note: string | null; at: Date }>();
  for (const e of events) {
    const id = e.subject.slice("agent:".length);
    if (out.has(id)) continue;
    const detail = e.detail as { note?: unknown };
    out.set(id, { approved: e.action.endsWith("approved"), note: typeof detail.note === "string" ? detail.note : null, at: e.createdAt });
  }
  return out;
}

/** Revokes an agent for good: its tunnel is closed and its next handshake refused. False when unknown. */
export async function revokeAgent(db: Db, actor: Actor, agentId: string): Promise<boolean> {
  return db.$transaction(async (tx) => {
    const n = await tx.agent.updateMany({ where: { id: agentId, status: { not: "revoked" } }, data: { status: "revoked", revokedAt: new Date() } });
    if (n.count === 0) return false;
    await recordAudit(tx, actor, "agent.revoked", `agent:${agentId}`);
    await publishHubEvent(tx, { kind: "agent_changed", agentId });
    return true;
  });
}

/** The owner's rate mode for an agent: auto (the agent learns its provider key's limits) or expert with their limits. */
export type AgentRateSettings =
  { rateMode: "auto" } | { rateMode: "expert"; rpmLimit: number | null; tpmLimit: number | null; concurrencyLimit: number | null };

/** Largest RPM, TPM and concurrency an owner may set (the protocol's bound). */
export const AGENT_RATE_LIMIT_MAX = 100_000_000;

/**
 * Reads a rate-mode form (`rateMode`, `rpm`, `tpm`, `concurrency` as text; empty = none): the settings, or an
 * error per field. Expert mode needs at least one limit.
 */
export function parseAgentRateSettings(
  raw: Record<string, string | undefined>,
): { ok: true; settings: AgentRateSettings } | { ok: false; errors: Partial<Record<"rateMode" | "rpm" | "tpm" | "concurrency", string>> } {
  const errors: Partial<Record<"rateMode" | "rpm" | "tpm" | "concurrency", string>> = {};
  const mode = raw.rateMode;
  if (mode !== "auto" && mode !== "expert") return { ok: false, errors: { rateMode: "Rate mode: auto or expert." } };
  if (mode === "auto") return { ok: true, settings: { rateMode: "auto" } };
  const words = { rpm: "Requests per minute", tpm: "Tokens per minute", concurrency: "Requests at once" } as const;
  const limit = (name: "rpm" | "tpm" | "concurrency"): number | null => {
    const text = raw[name]?.trim() ?? "";
    if (text === "") return null;
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > AGENT_RATE_LIMIT_MAX) {
      errors[name] = `${words[name]}: a whole number from 1 to ${AGENT_RATE_LIMIT_MAX.toLocaleString("en-US")}, or empty for none.`;
      return null;
    }
    return n;
  };
  const settings = { rateMode: "expert" as const, rpmLimit: limit("rpm"), tpmLimit: limit("tpm"), concurrencyLimit: limit("concurrency") };
  if (Object.keys(errors).length > 0) return { ok: false, errors };
  if (settings.rpmLimit === null && settings.tpmLimit === null && settings.concurrencyLimit === null)
    return { ok: false, errors: { rpm: "Expert mode needs at least one limit (requests per minute, tokens per minute or requests at once)." } };
  return { ok: true, settings };
}

/**
 * The owner sets an agent's rate mode and limits. The hub holds the agent to expert limits, and every gateway
 * pushes them to the live agent (CONFIG), which holds them itself. False when `ownerId` has no such agent.
 */
export async function setOwnAgentRate(db: Db, ownerId: string, agentId: string, settings: AgentRateSettings): Promise<boolean> {
  const data =
    settings.rateMode === "auto"
      ? { rateMode: "auto" as const, rpmLimit: null, tpmLimit: null, concurrencyLimit: null }
      : { rateMode: "expert" as const, rpmLimit: settings.rpmLimit, tpmLimit: settings.tpmLimit, concurrencyLimit: settings.concurrencyLimit };
  return db.$transaction(async (tx) => {
    const n = await tx.agent.updateMany({ where: { id: agentId, ownerId, status: { not: "revoked" } }, data });
    if (n.count === 0) return false;
    await recordAudit(tx, `user:${ownerId}`, "agent.rate_updated", `agent:${agentId}`, data);
    await publishHubEvent(tx, { kind: "agent_changed", agentId });
    return true;
  });
}
