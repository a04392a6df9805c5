/**
 * Server-side read of the gateway's health and tunnel gauges, from `/metrics` on the gateway's admin
 * listener (`WELLSPRING_GATEWAY_ADMIN_URL`; `npm start` sets it).
 */
export interface GatewayStatus {
  reachable: boolean;
  agentsConnected: number;
  streamsOpen: number;
  checkedAt: string;
}

const TIMEOUT_MS = 1500;
const ADMIN_ORIGIN_DEFAULT = "http://127.0.0.1:8789";

export async function gatewayStatus(origin: string = process.env.WELLSPRING_GATEWAY_ADMIN_URL ?? ADMIN_ORIGIN_DEFAULT): Promise<GatewayStatus> {
  const checkedAt = new Date().toISOString();
  try {
    const res = await fetch(`${origin}/metrics`, { cache: "no-store", signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!res.ok) return { reachable: false, agentsConnected: 0, streamsOpen: 0, checkedAt };
    const text = await res.text();
    const gauge = (name: string) => Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? 0);
    return { reachable: true, agentsConnected: gauge("wellspring_agents_connected"), streamsOpen: gauge("wellspring_streams_open"), checkedAt };
  } catch {
    return { reachable: false, agentsConnected: 0, streamsOpen: 0, checkedAt };
  }
}
