/**
 * The agent process. Started by launch.ts with the narrowest permissions:
 *   --allow-net=<hub>,<official provider hosts>  --allow-read=<data> --allow-write=<data> --allow-env=<key variables>
 *   deno run … src/main.ts serve --data <dir>
 *   deno run … src/main.ts enroll --data <dir> --hub https://… --pin sha256/… --token wse_… [--name N]
 */
import { importAgentPrivateKey, type Inventory } from "../../protocol/src/mod.ts";
import { loadConfig, loadIdentity, loadPrivateKey, resolveUpstreams } from "./config.ts";
import { enroll } from "./enroll.ts";
import { createLog } from "./log.ts";
import { PriceStore } from "./prices.ts";
import { checkDevOrigin, keyFingerprint } from "./providers.ts";
import { AGENT_VERSION, FatalTunnelError, Tunnel } from "./tunnel.ts";

export const DEV_UPSTREAM_ENV = "WELLSPRING_DEV_UPSTREAM_ORIGIN";
/** On SIGINT/SIGTERM, running streams get this long to finish before the agent exits. */
export const SHUTDOWN_DRAIN_MS = 10_000;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

function flags(args: string[], name: string): string[] {
  const out: string[] = [];
  args.forEach((a, i) => {
    if (a === `--${name}` && args[i + 1]) out.push(args[i + 1]!);
  });
  return out;
}

async function serve(dataDir: string): Promise<void> {
  const config = await loadConfig(dataDir);
  const log = createLog(config.logLevel);
  const identity = await loadIdentity(dataDir);
  const privateKey = await importAgentPrivateKey(await loadPrivateKey(dataDir));
  const upstreams = resolveUpstreams(config);
  const devRaw = Deno.env.get(DEV_UPSTREAM_ENV);
  const devOrigin = devRaw ? checkDevOrigin(devRaw) : null;
  if (devOrigin) log.warn("agent.dev_upstream", { origin: devOrigin, note: "DEVELOPMENT MODE: provider calls go to this loopback origin, not the official APIs" });
  const inventory: Inventory = {
    agentVersion: AGENT_VERSION,
    models: upstreams.flatMap((u) => u.models.map((model) => ({ provider: u.provider, model, contextTokens: null }))),
    keyFingerprints: [...new Set(await Promise.all(upstreams.map((u) => keyFingerprint(u.apiKey))))],
    concurrentStreamsMax: config.concurrentStreamsMax,
  };
  const stop = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => {
      log.info("agent.stopping", { signal: sig });
      stop.abort();
      // Streams get this long to drain after GOAWAY; then the process exits regardless.
      setTimeout(() => Deno.exit(0), SHUTDOWN_DRAIN_MS);
    });
  }
  log.info("agent.starting", { agentId: identity.agentId, hub: identity.hubUrl, models: inventory.models.length, version: AGENT_VERSION });
  const prices = new PriceStore(dataDir, log);
  await prices.load();
  const tunnel = new Tunnel({ identity, privateKey, upstreams, inventory, concurrentStreamsMax: config.concurrentStreamsMax, devOrigin, log, signal: stop.signal, prices, onReady: () => console.log("WELLSPRING_AGENT_READY") });
  await tunnel.run();
}

if (import.meta.main) {
  const [command, ...args] = Deno.args;
  const dataDir = flag(args, "data") ?? "./data";
  try {
    if (command === "serve") {
      await serve(dataDir);
      Deno.exit(0); // signal listeners and the drain timer would otherwise keep the process alive
    } else if (command === "enroll") {
      const hub = flag(args, "hub");
      const token = flag(args, "token");
      const pins = flags(args, "pin");
      if (!hub || !token || pins.length === 0) throw new Error("usage: enroll --hub https://HOST:PORT --pin sha256/… [--pin backup] --token wse_…");
      const id = await enroll({ hubUrl: hub, pins, token, name: flag(args, "name") ?? "agent", dataDir });
      console.log(`enrolled as ${id.agentId} with hub ${id.hubId}; start with: deno task start`);
    } else {
      throw new Error("usage: main.ts serve|enroll …");
    }
  } catch (error) {
    if (error instanceof FatalTunnelError) console.error(error.message);
    else console.error((error as Error).message);
    Deno.exit(1);
  }
}
