import "server-only";
import { currentHubEndpoint } from "@wellspring/db/core";
import {
  agentLedgerSummaries,
  AgentLockedError,
  changeOwnAgent,
  createEnrollmentToken,
  lastDiscountLaneDecision,
  parseAgentRateSettings,
  setOwnAgentRate,
  DUPLICATE_AGENT_IDENTITY,
  DUPLICATE_WARNING_WINDOW_MS,
  duplicateWarningOf,
  ENDPOINT_FORBIDDEN,
  ENDPOINT_WARNING_WINDOW_MS,
  endpointWarningOf,
  enrollSteps,
  heldEarnings,
  holdReasonText,
  liveBreakers,
  payoutAmountProblem,
  setPayoutDestination as setDestination,
  Treasury,
  updateRequiredNotice,
  type AgentLedgerSummary,
  type AgentBreakerView,
  type DuplicateWarning,
  type EarningsDay,
  type EndpointWarning,
  type EnrollSteps,
  type UpdateRequiredNotice,
} from "@wellspring/gateway";
import { db, pool } from "../db";
import { linkSecret } from "../links";
import { Forbidden, requireOwner, type Actor } from "./actor";

export { PAYOUT_DESTINATION_CHARS_MAX } from "@wellspring/gateway";

/** An agent counts as online while its tunnel session is set and it answered a heartbeat this recently, ms. */
export const ONLINE_WINDOW_MS = 60_000;

export function isOnline(agent: { connectedSession: string | null; lastSeenAt: Date | null }, now = Date.now()): boolean {
  return agent.connectedSession !== null && agent.lastSeenAt !== null && now - agent.lastSeenAt.getTime() < ONLINE_WINDOW_MS;
}

export interface Enrollment {
  token: string;
  expiresAt: Date;
  /** What the owner runs, in order, in the agent's folder: each a shell command printed with a copy button. */
  steps: EnrollSteps;
}

/** A single-use enrollment token for one of the actor's agents, and the exact command the owner runs. */
export async function createEnrollment(actor: Actor, label: string): Promise<Enrollment> {
  requireOwner(actor);
  // The agent URL and tunnel pin the running hub published (table hub_endpoints).
  const endpoint = await currentHubEndpoint(db());
  if (!endpoint) throw new Error("The hub has not published its agent address yet: start the gateway, then try again.");
  const hub = endpoint.agentUrl;
  const pin = endpoint.tunnelPin;
  const t = await createEnrollmentToken(db(), actor.userId, label.trim().slice(0, 60) || undefined);
  const name = label.trim().slice(0, 60) || "agent";
  return {
    token: t.token,
    expiresAt: t.expiresAt,
    steps: enrollSteps({ agentUrl: hub, pin, token: t.token, name }),
  };
}

export interface AgentRow {
  id: string;
  name: string;
  status: string;
  online: boolean;
  tier: string;
  /** In the discount lane (an administrator approved it). */
  discountLane: boolean;
  /** The owner asked to join the lane and no administrator has decided yet. */
  discountLaneRequestedAt: Date | null;
  /** The last administrator decision on a lane request, with its note (refusals are shown to the owner). */
  discountLaneDecision: { approved: boolean; note: string | null; at: Date } | null;
  version: string | null;
  models: string[];
  priceVer: number | null;
  lastSeenAt: Date | null;
  /** Another copy of this agent (same identity) tried to connect recently and was refused. */
  duplicate: DuplicateWarning | null;
  /** The agent refused calls because its provider host resolved outside the provider's networks. */
  endpoint: EndpointWarning | null;
  /** The hub refuses this agent's version (below the minimum it admits). */
  updateRequired: UpdateRequiredNotice | null;
  /** auto: the agent learns its provider key's limits; expert: the owner's limits below (null = none). */
  rateMode: "auto" | "expert";
  rpmLimit: number | null;
  tpmLimit: number | null;
  concurrencyLimit: number | null;
  /** What the agent last reported holding (auto mode: learnt from its provider), and when; null = never reported. */
  reported: { rpm: number | null; tpm: number | null; at: Date } | null;
  /** The two tails of its receipt chain and today's earnings by both sides. */
  ledger: AgentLedgerSummary;
  /** Models a gateway keeps from this agent now (its circuit breaker for them is open or half-open). */
  breakers: AgentBreakerView[];
}

export async function listAgents(actor: Actor): Promise<AgentRow[]> {
  requireOwner(actor);
  const rows = await db().agent.findMany({ where: { ownerId: actor.userId }, orderBy: { createdAt: "asc" } });
  // The hub's duplicate-identity and endpoint flags on the caller's own agents (subjects built from the rows above).
  const subjects = rows.map((a) => `agent:${a.id}`);
  const flags = await db().riskFlag.findMany({
    where: {
      OR: [
        { kind: DUPLICATE_AGENT_IDENTITY, lastRaisedAt: { gte: new Date(Date.now() - DUPLICATE_WARNING_WINDOW_MS) } },
        { kind: ENDPOINT_FORBIDDEN, lastRaisedAt: { gte: new Date(Date.now() - ENDPOINT_WARNING_WINDOW_MS) } },
      ],
      subject: { in: subjects },
    },
    orderBy: { lastRaisedAt: "desc" },
    select: { kind: true, subject: true, evidence: true, lastRaisedAt: true, raisedCount: true },
  });
  const policy = await db().agentReleasePolicy.findUnique({ where: { id: 1 } });
  const releasePolicy = { latestVersion: policy?.latestVersion ?? null, minimumVersion: policy?.minimumVersion ?? null };
  const ledgers = await agentLedgerSummaries(db(), rows);
  const laneDecisions = await lastDiscountLaneDecision(
    db(),
    rows.map((a) => a.id),
  );
  const breakers = await liveBreakers(
    db(),
    rows.map((a) => a.id),
  );
  const duplicates = new Map<string, DuplicateWarning>();
  const endpoints = new Map<string, EndpointWarning>();
  for (const f of flags) {
    const warning = duplicateWarningOf(f);
    if (warning && !duplicates.has(f.subject)) duplicates.set(f.subject, warning);
    const endpoint = endpointWarningOf(f);
    if (endpoint && !endpoints.has(f.subject)) endpoints.set(f.subject, endpoint);
  }
  return rows.map((a) => ({
    id: a.id,
    name: a.name,
    status: a.status,
    online: isOnline(a),
    tier: a.tier,
    discountLane: a.discountLane,
    discountLaneRequestedAt: a.discountLaneRequestedAt,
    discountLaneDecision: laneDecisions.get(a.id) ?? null,
    version: a.version,
    models: a.models,
    priceVer: a.priceVer,
    lastSeenAt: a.lastSeenAt,
    duplicate: duplicates.get(`agent:${a.id}`) ?? null,
    endpoint: endpoints.get(`agent:${a.id}`) ?? null,
    updateRequired: updateRequiredNotice(a, releasePolicy),
    rateMode: a.rateMode,
    rpmLimit: a.rpmLimit,
    tpmLimit: a.tpmLimit,
    concurrencyLimit: a.concurrencyLimit,
    reported: a.rateReportedAt ? { rpm: a.reportedRpm, tpm: a.reportedTpm, at: a.rateReportedAt } : null,
    ledger: ledgers.get(a.id)!,
    breakers: breakers.filter((b) => b.agentId === a.id),
  }));
}

export type AgentRateErrors = Partial<Record<"rateMode" | "rpm" | "tpm" | "concurrency" | "form", string>>;

/**
 * The owner's rate mode for one of their agents (form fields as text): auto, or expert with their RPM, TPM and
 * concurrency. Validated here; applied by every gateway and pushed to the live agent at once.
 */
export async function setAgentRate(actor: Actor, agentId: string, raw: Record<string, string>): Promise<{ ok: true } | { ok: false; errors: AgentRateErrors }> {
  requireOwner(actor);
  const parsed = parseAgentRateSettings(raw);
  if (!parsed.ok) return parsed;
  if (!(await setOwnAgentRate(db(), actor.userId, agentId, parsed.settings))) return { ok: false, errors: { form: "No such agent of yours." } };
  return { ok: true };
}

/**
 * The owner's own switches for one of their agents: pause (no new requests) and the discount lane. An
 * agent an admin suspended or revoked cannot be resumed by its owner. Applies on every gateway at once.
 */
export async function updateAgent(actor: Actor, agentId: string, change: { paused?: boolean; discountLane?: boolean }): Promise<boolean> {
  requireOwner(actor);
  try {
    return await changeOwnAgent(db(), actor.userId, agentId, change);
  } catch (error) {
    if (error instanceof AgentLockedError) throw new Forbidden(error.message);
    throw error;
  }
}

export interface Earnings {
  /** Earnings not requested for payout, not held and not pending probation: what a payout may ask for. */
  unrequestedMicros: bigint;
  /** Earnings held for an administrator's review, and why. */
  held: { totalMicros: bigint; reasons: { text: string; amountMicros: bigint; requests: number; since: Date }[] };
  /** Earnings of agents still on probation: available once each agent's probation ends (UTC). */
  probation: { totalMicros: bigint; agents: { agentId: string; amountMicros: bigint; endsAt: Date }[] };
  pendingPayoutMicros: bigint;
  paidMicros: bigint;
  byDay: EarningsDay[];
  byModel: { model: string; earningMicros: bigint; requests: number }[];
  payouts: { id: string; amountMicros: bigint; status: string; requestedAt: Date; decidedAt: Date | null; reference: string | null }[];
  /** Where the admin pays the owner; null = not set. */
  payoutDestination: string | null;
  /** Paid by the platform for the quality canaries its agents answered (in the balance; not in the lists above). */
  canaryPay: { micros: bigint; canaries: number };
}

export async function earnings(actor: Actor, days = 30): Promise<Earnings> {
  requireOwner(actor);
  const treasury = new Treasury(pool());
  const [balanceMicros, held, probation, byDay, byModel, payouts, canaryPay] = await Promise.all([
    treasury.ownerBalance(actor.userId),
    heldEarnings(db(), actor.userId),
    treasury.probationPending(actor.userId),
    treasury.ownerEarningsByDay(actor.userId, days),
    pool().query<{ model: string | null; earning: string; requests: string }>(
      `SELECT model, SUM(earning_micros)::text AS earning, COUNT(*)::text AS requests FROM reservations
       WHERE owner_id = $1 AND status = 'settled' AND settled_at >= now() - ($2::int * interval '1 day')
       GROUP BY model ORDER BY SUM(earning_micros) DESC LIMIT 20`,
      [actor.userId, days],
    ),
    db().payout.findMany({ where: { ownerId: actor.userId }, orderBy: { requestedAt: "desc" }, take: 50 }),
    treasury.ownerCanaryPay(actor.userId, days),
  ]);
  const owner = await db().user.findUnique({ where: { id: actor.userId }, select: { payoutDestination: true } });
  return {
    unrequestedMicros: balanceMicros - held.totalMicros - probation.totalMicros > 0n ? balanceMicros - held.totalMicros - probation.totalMicros : 0n,
    probation,
    held: {
      totalMicros: held.totalMicros,
      reasons: held.reasons.map((r) => ({ text: holdReasonText(r.reason), amountMicros: r.amountMicros, requests: r.requests, since: r.since })),
    },
    pendingPayoutMicros: payouts.filter((p) => p.status === "requested").reduce((n, p) => n + p.amountMicros, 0n),
    paidMicros: payouts.filter((p) => p.status === "paid").reduce((n, p) => n + p.amountMicros, 0n),
    byDay,
    byModel: byModel.rows.map((r) => ({ model: r.model ?? "unknown", earningMicros: BigInt(r.earning), requests: Number(r.requests) })),
    payouts: payouts.map((p) => ({
      id: p.id,
      amountMicros: p.amountMicros,
      status: p.status,
      requestedAt: p.requestedAt,
      decidedAt: p.decidedAt,
      reference: p.reference,
    })),
    payoutDestination: owner?.payoutDestination ?? null,
    canaryPay,
  };
}

/** Sets where the actor (an owner) is paid; the problem with the text, or null. */
export async function setPayoutDestination(actor: Actor, text: string): Promise<string | null> {
  requireOwner(actor);
  return setDestination(db(), linkSecret(), actor.userId, text);
}

/** Asks for a payout of the actor's own unrequested earnings. */
export async function requestPayout(actor: Actor, amountMicros: bigint): Promise<{ ok: true; payoutId: string } | { ok: false; error: string }> {
  requireOwner(actor);
  const problem = payoutAmountProblem(amountMicros);
  if (problem) return { ok: false, error: problem };
  const r = await new Treasury(pool()).requestPayout(actor.userId, amountMicros);
  return r.outcome === "requested" ? { ok: true, payoutId: r.payoutId } : { ok: false, error: "That is more than your unrequested earnings." };
}
