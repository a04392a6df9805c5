import "server-only";
import {
  canarySummaries,
  changeAgent,
  decideDiscountLane,
  degradedLimitsGateways,
  discountLaneRequests,
  Ledger,
  liveBreakers,
  setUserStatus as setStatus,
  Treasury,
  type AgentBreakerView,
  type AgentCanarySummary,
  type DegradedLimitsGateway,
} from "@wellspring/gateway";
import { db, pool } from "../db";
import { mailMode } from "../mail";
import { clearSigninThrottle, signinThrottleStates, type SigninThrottleState } from "../throttle";
import { requireAdmin, type Actor } from "./actor";
import { isOnline } from "./owner";

/** Rows per admin search. */
export const ADMIN_SEARCH_ROWS = 50;

export interface UserRow {
  id: string;
  email: string;
  name: string | null;
  status: string;
  isOwner: boolean;
  isAdmin: boolean;
  availableMicros: bigint;
  spentMicros: bigint;
  createdAt: Date;
  /** The account's sign-in slow-down, when failed sign-ins are counted against it now. */
  signinThrottle: SigninThrottleState | null;
}

export interface AdminAgentRow {
  id: string;
  name: string;
  ownerEmail: string;
  status: string;
  tier: string;
  discountLane: boolean;
  priceVer: number | null;
  lastSeenAt: Date | null;
  /** Models a gateway keeps from this agent now (circuit breaker open or half-open). */
  breakers: AgentBreakerView[];
  /** Its quality canaries over the last CANARY_SUMMARY_WINDOW_MS and the tier they recommend; null when none ran. */
  canaries: AgentCanarySummary | null;
}

/** Users and agents whose email, name or id contains `q` (case-insensitive); newest first. */
export async function searchAccounts(actor: Actor, q: string): Promise<{ users: UserRow[]; agents: AdminAgentRow[] }> {
  requireAdmin(actor);
  const term = q.trim();
  const users = await db().user.findMany({
    where: term ? { OR: [{ email: { contains: term, mode: "insensitive" } }, { name: { contains: term, mode: "insensitive" } }, { id: term }] } : {},
    orderBy: { createdAt: "desc" },
    take: ADMIN_SEARCH_ROWS,
  });
  const wallets = await db().wallet.findMany({ where: { userId: { in: users.map((u) => u.id) } } });
  const byUser = new Map(wallets.map((w) => [w.userId, w]));
  const throttles = await signinThrottleStates(users.map((u) => u.email));
  const agents = await db().agent.findMany({
    where: term ? { OR: [{ id: term }, { name: { contains: term, mode: "insensitive" } }, { owner: { email: { contains: term, mode: "insensitive" } } }] } : {},
    include: { owner: { select: { email: true } } },
    orderBy: { createdAt: "desc" },
    take: ADMIN_SEARCH_ROWS,
  });
  const agentIds = agents.map((a) => a.id);
  const breakers = await liveBreakers(db(), agentIds);
  const canaries = await canarySummaries(db(), agentIds);
  return {
    users: users.map((u) => ({
      id: u.id,
      email: u.email,
      name: u.name,
      status: u.status,
      isOwner: u.isOwner,
      isAdmin: u.isAdmin,
      availableMicros: byUser.get(u.id)?.availableMicros ?? 0n,
      spentMicros: byUser.get(u.id)?.spentMicros ?? 0n,
      createdAt: u.createdAt,
      signinThrottle: throttles.get(u.email) ?? null,
    })),
    agents: agents.map((a) => ({
      id: a.id,
      name: a.name,
      ownerEmail: a.owner.email,
      status: a.status,
      tier: a.tier,
      discountLane: a.discountLane,
      priceVer: a.priceVer,
      lastSeenAt: a.lastSeenAt,
      breakers: breakers.filter((b) => b.agentId === a.id),
      canaries: canaries.get(a.id) ?? null,
    })),
  };
}

/** Suspends or reactivates a user (never the acting admin); their keys follow at once, on every gateway. */
export async function setUserStatus(actor: Actor, userId: string, status: "active" | "suspended", note: string): Promise<boolean> {
  requireAdmin(actor);
  if (userId === actor.userId) throw new Error("You cannot suspend your own account.");
  return setStatus(db(), `user:${actor.userId}`, userId, status, note);
}

/** Ends a user's sign-in slow-down from every address ("unlock"); the per-address limits stay. */
export async function unlockSignin(actor: Actor, userId: string): Promise<boolean> {
  requireAdmin(actor);
  const user = await db().user.findUnique({ where: { id: userId }, select: { email: true } });
  if (!user) return false;
  const cleared = await clearSigninThrottle(user.email);
  await db().auditEvent.create({
    data: { actor: `user:${actor.userId}`, action: "account.signin_unlocked", subject: `user:${userId}`, detail: { counters: cleared } },
  });
  return true;
}

/** Rows on the Outbox page. */
export const OUTBOX_ROWS = 100;

export interface OutboxRow {
  id: string;
  kind: string;
  toAddress: string;
  subject: string;
  text: string;
  createdAt: Date;
}

/** The newest mail kept in the outbox (where mail goes while SMTP_URL is unset), and where mail goes now. */
export async function outbox(actor: Actor): Promise<{ mode: "smtp" | "outbox"; mails: OutboxRow[] }> {
  requireAdmin(actor);
  const mails = await db().outboxMail.findMany({ orderBy: { createdAt: "desc" }, take: OUTBOX_ROWS });
  return { mode: mailMode(), mails };
}

/** Sets an agent's tier or status (suspend / reactivate); applies on every gateway at once. */
export async function setAgent(actor: Actor, agentId: string, change: { tier?: "S" | "A" | "discount"; status?: "active" | "suspended" }): Promise<boolean> {
  requireAdmin(actor);
  return changeAgent(db(), `user:${actor.userId}`, agentId, change);
}

export interface LaneRequestRow {
  agentId: string;
  agentName: string;
  ownerEmail: string;
  tier: string;
  status: string;
  requestedAt: Date;
}

/** Owners' pending requests to put an agent in the discount lane, oldest first. Admins only. */
export async function laneRequests(actor: Actor): Promise<LaneRequestRow[]> {
  requireAdmin(actor);
  const rows = await discountLaneRequests(db());
  return rows.map((a) => ({
    agentId: a.id,
    agentName: a.name,
    ownerEmail: a.owner.email,
    tier: a.tier,
    status: a.status,
    requestedAt: a.discountLaneRequestedAt!,
  }));
}

/** Approves (the agent joins the lane, on every gateway at once) or refuses a pending lane request, with a note; audited. Admins only. */
export async function decideLane(
  actor: Actor,
  agentId: string,
  approve: boolean,
  note: string,
): Promise<"done" | "no_request" | "note_required" | "note_too_long"> {
  requireAdmin(actor);
  return decideDiscountLane(db(), `user:${actor.userId}`, agentId, approve, note);
}

export interface BatchRow {
  id: string;
  amountMicros: bigint;
  codeCount: number;
  redeemed: number;
  note: string | null;
  expiresAt: Date | null;
  createdAt: Date;
}

export async function redemptionBatches(actor: Actor): Promise<BatchRow[]> {
  requireAdmin(actor);
  const r = await pool().query<{
    id: string;
    amount: string;
    code_count: number;
    redeemed: string;
    note: string | null;
    expires_at: Date | null;
    created_at: Date;
  }>(
    `SELECT b.id, b.amount_micros::text AS amount, b.code_count, COUNT(c.redeemed_at)::text AS redeemed, b.note, b.expires_at, b.created_at
     FROM redemption_batches b LEFT JOIN redemption_codes c ON c.batch_id = b.id GROUP BY b.id ORDER BY b.created_at DESC LIMIT 100`,
  );
  return r.rows.map((b) => ({
    id: b.id,
    amountMicros: BigInt(b.amount),
    codeCount: b.code_count,
    redeemed: Number(b.redeemed),
    note: b.note,
    expiresAt: b.expires_at,
    createdAt: b.created_at,
  }));
}

export async function createBatch(
  actor: Actor,
  input: { amountMicros: bigint; count: number; note: string; expiresAt: Date | null },
): Promise<{ batchId: string; codes: string[] }> {
  requireAdmin(actor);
  return new Treasury(pool()).createRedemptionBatch(`user:${actor.userId}`, {
    amountMicros: input.amountMicros,
    count: input.count,
    note: input.note || undefined,
    expiresAt: input.expiresAt,
  });
}

export interface SystemStatus {
  currentPriceVer: number | null;
  agents: { id: string; name: string; online: boolean; priceVer: number | null }[];
  audit: { ok: boolean; problems: string[]; walletsChecked: number };
  openFlags: number;
  pendingPayouts: { count: number; amountMicros: bigint };
  /** Running gateways counting limits locally because Redis does not answer (an alert), and since when. */
  limitsDegraded: DegradedLimitsGateway[];
}

export async function systemStatus(actor: Actor): Promise<SystemStatus> {
  requireAdmin(actor);
  const [ver, agents, audit, openFlags, pending, limitsDegraded] = await Promise.all([
    db().priceVersion.findFirst({ orderBy: { ver: "desc" }, select: { ver: true } }),
    db().agent.findMany({ where: { status: { not: "revoked" } }, orderBy: { createdAt: "asc" }, take: 200 }),
    new Ledger(pool()).audit(),
    db().riskFlag.count({ where: { status: "open" } }),
    db().payout.aggregate({ where: { status: "requested" }, _count: true, _sum: { amountMicros: true } }),
    degradedLimitsGateways(db()),
  ]);
  return {
    currentPriceVer: ver?.ver ?? null,
    agents: agents.map((a) => ({ id: a.id, name: a.name, online: isOnline(a), priceVer: a.priceVer })),
    audit: { ok: audit.ok, problems: audit.problems, walletsChecked: audit.walletsChecked },
    openFlags,
    pendingPayouts: { count: pending._count, amountMicros: pending._sum.amountMicros ?? 0n },
    limitsDegraded,
  };
}
