/**
 * The Deno permissions the launcher grants the agent process, computed from the local files:
 *
 *   enroll: --allow-net=<hub> --allow-read=<data> --allow-write=<data>
 *   serve:  --allow-net=<hub>,<official provider hosts>[,<dev origin>] --allow-read=<data>
 *           (a provider host is granted without a port: resolving it, for the endpoint check, needs that)
 *           --allow-write=<data>/state --allow-env=<the key variables named in config.json>
 *           with HTTPS_PROXY set: the proxy's host:port in --allow-net, and the proxy variables that are set
 *           (HTTPS_PROXY, https_proxy, NO_PROXY, no_proxy: egress_proxy.ts) in --allow-env
 *
 * The serving agent can read its identity and configuration but write only its state folder: the files
 * that decide these permissions (agent.json, agent-key.pk8, config.json) are out of its reach, so an agent
 * that was compromised cannot widen its own sandbox for the next launch.
 */
import type { AgentConfig } from "./config.ts";
import { hubNetPermission } from "./hub_url.ts";
import { upstreamHosts } from "./providers.ts";

/** Variables npm:ws reads at load time (feature switches, not secrets). */
export const WS_ENV = ["WS_NO_BUFFER_UTIL", "WS_NO_UTF_8_VALIDATE"] as const;

/** The one folder the serving agent may write (prices.json; later its ledger). */
export function stateDir(dataDir: string): string {
  return `${dataDir}/state`;
}

/** An absolute path without a comma: a comma would split a permission list into two entries. */
export function checkDataDir(dataDir: string): string {
  if (!dataDir.startsWith("/")) throw new Error(`Cannot use data folder ${dataDir}: it must be an absolute path`);
  if (/[,\0\n]/.test(dataDir)) throw new Error(`Cannot use data folder ${dataDir}: the path may not contain a comma`);
  return dataDir.replace(/\/+$/, "") || "/";
}

export function enrollPermissions(dataDir: string, hubOrigin: string): string[] {
  return [`--allow-net=${hubNetPermission(hubOrigin)}`, `--allow-read=${dataDir}`, `--allow-write=${dataDir}`, `--allow-env=${WS_ENV.join(",")}`];
}

export interface ServeInputs {
  dataDir: string;
  /** Canonical hub origin (parseHubUrl). */
  hubOrigin: string;
  config: AgentConfig;
  /** Checked loopback origin (checkDevOrigin), or null in production. */
  devOrigin: string | null;
  /** The https proxy from the launcher's environment: its host:port and the proxy variables set; null: none. */
  proxy?: { address: string; env: readonly string[] } | null;
}

export function servePermissions(i: ServeInputs): string[] {
  // Deno checks a name lookup (endpoint_check.ts) against the bare host name, so the provider hosts go in without a port.
  const net = [hubNetPermission(i.hubOrigin), ...upstreamHosts(i.config.upstreams).map((h) => h.replace(/:443$/, ""))];
  if (i.devOrigin) {
    const dev = new URL(i.devOrigin);
    net.push(`${dev.hostname}:${dev.port || (dev.protocol === "https:" ? "443" : "80")}`);
  }
  if (i.proxy) net.push(i.proxy.address);
  const keyVariables = i.config.upstreams.flatMap((u) => (u.apiKeyEnv ? [u.apiKeyEnv] : []));
  return [
    `--allow-net=${[...new Set(net)].join(",")}`,
    `--allow-read=${i.dataDir}`,
    `--allow-write=${stateDir(i.dataDir)}`,
    `--allow-env=${[...new Set([...WS_ENV, ...keyVariables, ...(i.proxy?.env ?? [])])].join(",")}`,
  ];
}
