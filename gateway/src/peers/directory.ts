/**
 * The gateways' directory in PostgreSQL (`gateway_peers`): where each live gateway takes forwarded requests, and
 * which agents the other gateways hold. Every gateway renews its own row every `PEER_RENEW_INTERVAL_MS`; a row
 * not renewed for `PEER_TTL_MS` is a dead gateway's (its agents' presence stops counting, see
 * `tunnel/presence.ts`, and nothing is forwarded to it).
 */
import type { Db } from "@wellspring/db/core";
import type { Tier } from "../tunnel/registry.ts";

type Executor = Pick<Db, "$queryRaw" | "$executeRaw">;

/** How often a gateway renews its directory row, ms. */
export const PEER_RENEW_INTERVAL_MS = 1_000;
/** A gateway whose row was not renewed for this long is dead, ms (a few missed renewals, not one slow query). */
export const PEER_TTL_MS = 5_000;

/** Where this gateway takes forwarded requests. */
export interface PeerEndpoint {
  gatewayId: string;
  /** `wss://host:port/gateway/v1/peer` */
  url: string;
  /** SPKI pin of the gateway's TLS key, `sha256/<base64>`. */
  pin: string;
  secret: string;
}

/** Writes (or renews) this gateway's row. */
export async function announcePeer(db: Executor, e: PeerEndpoint, ttlMs: number = PEER_TTL_MS): Promise<void> {
  await db.$executeRaw`
    INSERT INTO gateway_peers (gateway_id, url, pin, secret, expires_at)
    VALUES (${e.gatewayId}, ${e.url}, ${e.pin}, ${e.secret}, now() + ${ttlMs}::int * interval '1 millisecond')
    ON CONFLICT (gateway_id) DO UPDATE SET url = EXCLUDED.url, pin = EXCLUDED.pin, secret = EXCLUDED.secret, expires_at = EXCLUDED.expires_at`;
}

/** The gateway stops: no more forwarding to it. */
export async function withdrawPeer(db: Executor, gatewayId: string): Promise<void> {
  await db.$executeRaw`DELETE FROM gateway_peers WHERE gateway_id = ${gatewayId}`;
}

/** An agent connected to another live gateway, as this gateway routes to it. */
export interface RemoteAgentRow {
  agentId: string;
  gatewayId: string;
  ownerId: string;
  status: "active" | "paused" | "suspended" | "revoked";
  tier: Tier;
  discountLane: boolean;
  createdAt: Date;
  rateMode: "auto" | "expert";
  rpmLimit: number | null;
  tpmLimit: number | null;
  concurrencyLimit: number | null;
  /** `provider:model` as its inventory said. */
  models: string[];
  /** Context windows it reported, tokens, by `provider:model` (absent: unknown). */
  contextWindows: Record<string, unknown>;
}

export interface PeerRow {
  gatewayId: string;
  url: string;
  pin: string;
  secret: string;
}

/** The other live gateways, and the live agents each holds. One query each, both on small tables. */
export async function readPeers(db: Executor, selfId: string): Promise<{ peers: PeerRow[]; agents: RemoteAgentRow[] }> {
  const peers = await db.$queryRaw<PeerRow[]>`
    SELECT gateway_id AS "gatewayId", url, pin, secret FROM gateway_peers WHERE gateway_id <> ${selfId} AND expires_at > now()`;
  if (peers.length === 0) return { peers, agents: [] };
  const agents = await db.$queryRaw<RemoteAgentRow[]>`
    SELECT a.id AS "agentId", a.connected_gateway AS "gatewayId", a.owner_id AS "ownerId", a.status::text AS status, a.tier::text AS tier,
      a.discount_lane AS "discountLane", a.created_at AS "createdAt", a.rate_mode::text AS "rateMode", a.rpm_limit AS "rpmLimit", a.tpm_limit AS "tpmLimit",
      a.concurrency_limit AS "concurrencyLimit", a.models, a.context_windows AS "contextWindows"
    FROM agents a JOIN gateway_peers p ON p.gateway_id = a.connected_gateway
    WHERE a.connected_gateway <> ${selfId} AND p.expires_at > now() AND a.presence_expires_at > now()`;
  return { peers, agents };
}
