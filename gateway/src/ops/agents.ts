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
    const n = await tx.agent.updateMany({ where: { id: agentId, status: { not: "revoked" } }, data: change });
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
 * The owner's own switches for one of their agents: pause (no new requests) and the discount lane. An agent
 * an admin suspended or revoked cannot be resumed by its owner (AgentLockedError). False when `ownerId` has no
 * such agent.
 */
export async function changeOwnAgent(db: Db, ownerId: string, agentId: string, change: { paused?: boolean; discountLane?: boolean }): Promise<boolean> {
  return db.$transaction(async (tx) => {
    const agent = await tx.agent.findFirst({ where: { id: agentId, ownerId } });
    if (!agent) return false;
    const data: { status?: "active" | "paused"; discountLane?: boolean } = {};
    if (change.paused !== undefined) {
      if (agent.status !== "active" && agent.status !== "paused") throw new AgentLockedError(agent.status);
      data.status = change.paused ? "paused" : "active";
    }
    if (change.discountLane !== undefined) data.discountLane = change.discountLane;
    await tx.agent.update({ where: { id: agent.id }, data });
    await recordAudit(tx, `user:${ownerId}`, "agent.owner_updated", `agent:${agent.id}`, data);
    await publishHubEvent(tx, { kind: "agent_changed", agentId: agent.id });
    return true;
  });
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
