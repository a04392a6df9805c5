/**
 * Where agents reach the hub and the tunnel key they pin, as the running hub published it (table
 * `hub_endpoints`): what the operator CLI and the portal put into the enrollment command they print.
 */
import type { Db } from "./client.ts";

export interface HubEndpoint {
  hubId: string;
  /** The origin agents dial, `https://host:port`. */
  agentUrl: string;
  /** `sha256/<base64>` of the tunnel certificate's public key. */
  tunnelPin: string;
  updatedAt: Date;
}

/** Records (or refreshes) a hub's endpoint; every gateway of a hub writes the same row when it starts listening. */
export async function publishHubEndpoint(db: Db, e: Omit<HubEndpoint, "updatedAt">): Promise<void> {
  const updatedAt = new Date();
  await db.hubEndpoint.upsert({
    where: { hubId: e.hubId },
    create: { hubId: e.hubId, agentUrl: e.agentUrl, tunnelPin: e.tunnelPin, updatedAt },
    update: { agentUrl: e.agentUrl, tunnelPin: e.tunnelPin, updatedAt },
  });
}

/** The endpoint published last (one database serves one hub), or null when no hub has started on it yet. */
export async function currentHubEndpoint(db: Db): Promise<HubEndpoint | null> {
  return db.hubEndpoint.findFirst({ orderBy: { updatedAt: "desc" } });
}
