/**
 * Hub events: changes every gateway must act on at once (a price version published, plans or tiers edited,
 * an agent's settings changed, a virtual key created or changed, a user's status or plan changed, an agent release published). Sent with PostgreSQL NOTIFY on one channel, so they need nothing beyond the
 * database (the embedded default included) and, sent inside a transaction, go out only if it commits.
 */
import type { Db } from "./client.ts";

export const HUB_EVENTS_CHANNEL = "wellspring_events";

export type HubEvent =
  | { kind: "price_published"; ver: number }
  | { kind: "tariffs_changed" }
  | { kind: "agent_changed"; agentId: string }
  /** A new virtual key; `hashPrefix` is the first 16 hex digits of its stored SHA-256 (the gateways' key filter). */
  | { kind: "key_created"; keyId: string; hashPrefix: string }
  /** A key revoked or edited: gateways drop what they cached about it. */
  | { kind: "key_changed"; keyId: string }
  /** A user suspended, reinstated or moved to another plan: gateways drop what they cached about their keys. */
  | { kind: "user_changed"; userId: string }
  /** An agent release was published or the release policy (latest offered, minimum admitted) changed. */
  | { kind: "releases_changed" };

type Executor = Pick<Db, "$executeRaw">;

/** Sends an event to every gateway; inside `db.$transaction`, pass the transaction client. */
export async function publishHubEvent(db: Executor, event: HubEvent): Promise<void> {
  await db.$executeRaw`SELECT pg_notify(${HUB_EVENTS_CHANNEL}, ${JSON.stringify(event)})`;
}

export function parseHubEvent(payload: string | undefined): HubEvent | null {
  try {
    const e = JSON.parse(payload ?? "") as Partial<HubEvent> & Record<string, unknown>;
    if (e.kind === "price_published" && Number.isSafeInteger(e.ver)) return { kind: e.kind, ver: e.ver as number };
    if (e.kind === "tariffs_changed") return { kind: e.kind };
    if (e.kind === "agent_changed" && typeof e.agentId === "string") return { kind: e.kind, agentId: e.agentId };
    if (e.kind === "key_created" && typeof e.keyId === "string" && typeof e.hashPrefix === "string" && /^[0-9a-f]{16}$/.test(e.hashPrefix)) {
      return { kind: e.kind, keyId: e.keyId, hashPrefix: e.hashPrefix };
    }
    if (e.kind === "key_changed" && typeof e.keyId === "string") return { kind: e.kind, keyId: e.keyId };
    if (e.kind === "user_changed" && typeof e.userId === "string") return { kind: e.kind, userId: e.userId };
    if (e.kind === "releases_changed") return { kind: e.kind };
  } catch {
    /* not an event */
  }
  return null;
}
