/**
 * Hub events: changes every gateway must act on at once (a price version published, plans or tiers edited,
 * an agent's settings changed). Sent with PostgreSQL NOTIFY on one channel, so they need nothing beyond the
 * database (the embedded default included) and, sent inside a transaction, go out only if it commits.
 */
import type { Db } from "./client.ts";

export const HUB_EVENTS_CHANNEL = "wellspring_events";

export type HubEvent =
  | { kind: "price_published"; ver: number }
  | { kind: "tariffs_changed" }
  | { kind: "agent_changed"; agentId: string };

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
  } catch {
    /* not an event */
  }
  return null;
}
