/**
 * Agent presence in PostgreSQL, shared by every gateway: which tunnel session holds an agent's identity, on
 * which gateway, and until when it counts as alive without another heartbeat (`presence_expires_at`, renewed
 * on every PONG). Every write is conditional on the session id, so two sessions can never both hold an agent
 * and a session that lost its place cannot write itself back.
 */
import type { Db } from "@wellspring/db/core";

type Executor = Pick<Db, "$queryRaw" | "$executeRaw">;

export interface Holder {
  /** The session holding the agent, or null when none does. */
  sessionId: string | null;
  gatewayId: string | null;
  /** The address the holding session connected from. */
  address: string | null;
  /**
   * Its presence ran out (no heartbeat recorded within its time to live), or its gateway is dead (that gateway's
   * `gateway_peers` row ran out: it stopped renewing it), by the database's clock.
   */
  expired: boolean;
}

/** The agent's current holder; null when the agent does not exist. */
export async function readHolder(db: Executor, agentId: string): Promise<Holder | null> {
  const rows = await db.$queryRaw<{ connected_session: string | null; connected_gateway: string | null; last_ip: string | null; expired: boolean }[]>`
    SELECT connected_session, connected_gateway, last_ip,
      (presence_expires_at IS NULL OR presence_expires_at <= now()
        OR EXISTS (SELECT 1 FROM gateway_peers p WHERE p.gateway_id = agents.connected_gateway AND p.expires_at <= now())) AS expired
    FROM agents WHERE id = ${agentId}`;
  const r = rows[0];
  return r ? { sessionId: r.connected_session, gatewayId: r.connected_gateway, address: r.last_ip, expired: r.expired } : null;
}

export interface Claim {
  agentId: string;
  sessionId: string;
  gatewayId: string;
  address: string;
  /** How long the claim counts as alive without a renewal, ms. */
  ttlMs: number;
  /** The holder the claimant judged: the claim succeeds only if it still holds the agent. */
  expectHolder: string | null;
  /** …and, when set, only if that holder's presence has run out. */
  requireExpired: boolean;
}

/** Compare-and-set: takes the agent for `sessionId` if the holder is still the one judged. */
export async function claimPresence(db: Executor, c: Claim): Promise<boolean> {
  const n = await db.$executeRaw`
    UPDATE agents SET connected_session = ${c.sessionId}, connected_gateway = ${c.gatewayId}, last_ip = ${c.address},
      last_seen_at = now(), presence_expires_at = now() + ${c.ttlMs}::int * interval '1 millisecond'
    WHERE id = ${c.agentId} AND connected_session IS NOT DISTINCT FROM ${c.expectHolder}
      AND (NOT ${c.requireExpired}::boolean OR presence_expires_at IS NULL OR presence_expires_at <= now()
        OR EXISTS (SELECT 1 FROM gateway_peers p WHERE p.gateway_id = agents.connected_gateway AND p.expires_at <= now()))`;
  return n === 1;
}

/** A heartbeat: extends the session's presence. False when another session has taken the agent. */
export async function renewPresence(db: Executor, agentId: string, sessionId: string, ttlMs: number): Promise<boolean> {
  const n = await db.$executeRaw`
    UPDATE agents SET last_seen_at = now(), presence_expires_at = now() + ${ttlMs}::int * interval '1 millisecond'
    WHERE id = ${agentId} AND connected_session = ${sessionId}`;
  return n === 1;
}

/**
 * How long a session's end is kept (`agent_session_ends`), ms: the hub's re-send window for unreceipted settlements
 * (gateway/src/ledger/receipts.ts, UNRECEIPTED_RESEND_WINDOW_MS), after which no crash-witnessed receipt can come.
 */
export const SESSION_END_KEEP_MS = 86_400_000;

/**
 * The session closed: the agent is offline, unless another session holds it by now. Its end is recorded either way
 * (a crash-witnessed receipt is checked against it: ledger/receipts.ts), and ends older than SESSION_END_KEEP_MS go.
 */
export async function releasePresence(db: Executor, agentId: string, sessionId: string): Promise<void> {
  await db.$executeRaw`
    WITH ended AS (INSERT INTO agent_session_ends (agent_id, ended_at) VALUES (${agentId}, now())),
         pruned AS (DELETE FROM agent_session_ends WHERE agent_id = ${agentId} AND ended_at < now() - ${SESSION_END_KEEP_MS}::int * interval '1 millisecond')
    UPDATE agents SET connected_session = NULL, connected_gateway = NULL, presence_expires_at = NULL, last_seen_at = now()
    WHERE id = ${agentId} AND connected_session = ${sessionId}`;
}

/** A gateway stops: every agent it holds is offline. */
export async function releaseGatewayPresence(db: Executor, gatewayId: string): Promise<number> {
  return db.$executeRaw`
    UPDATE agents SET connected_session = NULL, connected_gateway = NULL, presence_expires_at = NULL, last_seen_at = now()
    WHERE connected_gateway = ${gatewayId}`;
}

/** What a new connection may do about the current holder. */
export type Verdict =
  | { action: "claim"; expectHolder: string | null; requireExpired: boolean }
  /** The holder lives on this gateway: ping it; take its place only if it does not answer in time. */
  | { action: "probe"; sessionId: string }
  | { action: "refuse" };

/**
 * One live connection per identity. A new connection takes the agent when nobody holds it, when the agent
 * names the holder as its own previous session (it reconnected), when the holder was on this gateway and is
 * gone, or when the holder's presence ran out on another gateway. A holder on this gateway that is still
 * connected is asked (a ping); a live holder on another gateway keeps the agent.
 */
export function judgeHolder(
  holder: Holder,
  claimant: { gatewayId: string; previousSessionId: string | null; isLocalSession(sessionId: string): boolean },
): Verdict {
  if (holder.sessionId === null) return { action: "claim", expectHolder: null, requireExpired: false };
  if (holder.sessionId === claimant.previousSessionId) return { action: "claim", expectHolder: holder.sessionId, requireExpired: false };
  if (holder.gatewayId === claimant.gatewayId) {
    return claimant.isLocalSession(holder.sessionId)
      ? { action: "probe", sessionId: holder.sessionId }
      : { action: "claim", expectHolder: holder.sessionId, requireExpired: false };
  }
  if (holder.expired) return { action: "claim", expectHolder: holder.sessionId, requireExpired: true };
  return { action: "refuse" };
}
