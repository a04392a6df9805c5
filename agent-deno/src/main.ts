/**
 * The agent process. Started by launch.ts with the narrowest permissions (see permissions.ts):
 *   deno run … src/main.ts serve --data <dir> [--dev-upstream http://127.0.0.1:PORT [--dev-resolve HOST=IP[,IP]]… [--dev-no-ledger]]
 *   deno run … src/main.ts enroll --data <dir> --hub https://… --pin sha256/… --token wse_… [--name N]
 * It exits with a code from exit_codes.ts, so the launcher knows whether a restart can help.
 */
import { importAgentPrivateKey, type Inventory } from "../../protocol/src/mod.ts";
import { ConfigError, loadConfig, loadIdentity, loadPrivateKey, resolveUpstreams } from "./config.ts";
import { ContextWindows } from "./context_windows.ts";
import { enroll } from "./enroll.ts";
import { ExitCode } from "./exit_codes.ts";
import { HubUrlError } from "./hub_url.ts";
import { createLog } from "./log.ts";
import { stateDir } from "./permissions.ts";
import { PriceStore } from "./prices.ts";
import { checkDevOrigin, EndpointError, keyFingerprint } from "./providers.ts";
import { processProxy, ProxyConfigError } from "./egress_proxy.ts";
import { EndpointGuard, parseDevResolve, staticResolver } from "./endpoint_check.ts";
import { FatalTunnelError, Tunnel, UpdateRequiredError } from "./tunnel.ts";
import { SHARED_POOL } from "./upstream_http.ts";
import { AGENT_VERSION } from "./version.ts";
import { StatusWriter } from "./status.ts";
import { writeOffer } from "./update_offer.ts";
import { AgentLedger, ledgerDir } from "./ledger.ts";
import { ReceiptClerk } from "./receipts.ts";

/** On SIGINT/SIGTERM, running streams get this long to finish before the agent exits. */
export const SHUTDOWN_DRAIN_MS = 10_000;

class UsageError extends Error {}

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

/**
 * Serves until stopped. `devUpstream` (tests and demos only) sends provider calls to a loopback origin; with it,
 * `noLedger` (benchmarks only) runs without the edge ledger, to measure what the ledger costs.
 */
async function serve(dataDir: string, devUpstream: string | undefined, devResolve: string[], noLedger: boolean): Promise<void> {
  const config = await loadConfig(dataDir);
  const log = createLog(config.logLevel);
  const identity = await loadIdentity(dataDir);
  const privateKey = await importAgentPrivateKey(await loadPrivateKey(dataDir));
  const upstreams = resolveUpstreams(config);
  const devOrigin = devUpstream === undefined ? null : checkDevOrigin(devUpstream);
  if (devResolve.length > 0 && !devOrigin) throw new UsageError("--dev-resolve is for development only: it needs --dev-upstream");
  if (noLedger && !devOrigin) throw new UsageError("--dev-no-ledger is for development only: it needs --dev-upstream");
  // Production checks every provider host by address; a development upstream only when given answers to check.
  const endpoints = !devOrigin
    ? new EndpointGuard()
    : devResolve.length > 0
      ? new EndpointGuard({ resolver: staticResolver(parseDevResolve(devResolve)) })
      : null;
  // HTTPS_PROXY / NO_PROXY as the launcher granted them: a setting that cannot be used stops the agent here.
  const proxy = processProxy();
  if (proxy)
    log.info("agent.proxy", { proxy: proxy.address, noProxyEntries: proxy.noProxy.length, note: "provider calls and the egress probe go through this proxy" });
  if (devOrigin)
    log.warn("agent.dev_upstream", { origin: devOrigin, note: "DEVELOPMENT MODE: provider calls go to this loopback origin, not the official APIs" });
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
      setTimeout(() => Deno.exit(ExitCode.OK), SHUTDOWN_DRAIN_MS);
    });
  }
  log.info("agent.starting", { agentId: identity.agentId, hub: identity.hubUrl, models: inventory.models.length, version: AGENT_VERSION });
  const windows = new ContextWindows(stateDir(dataDir), log);
  await windows.load();
  const prices = new PriceStore(stateDir(dataDir), log, dataDir);
  await prices.load();
  const ledger = noLedger ? null : await AgentLedger.open(ledgerDir(stateDir(dataDir)), identity.agentId, privateKey);
  const receipts = ledger ? new ReceiptClerk(ledger, () => prices.table, log) : undefined;
  if (ledger) log.info("agent.ledger", { tailSeq: ledger.tail.seq, unacknowledged: ledger.unacknowledged(1).length > 0 });
  else log.warn("agent.no_ledger", { note: "DEVELOPMENT MODE: no edge ledger — this agent signs no receipts (benchmarks only)" });
  const status = new StatusWriter(stateDir(dataDir), {
    version: AGENT_VERSION,
    agentId: identity.agentId,
    hubUrl: identity.hubUrl,
    priceVer: prices.ver,
    proxy: proxy?.address ?? null,
  });
  try {
    const tunnel = new Tunnel({
      identity,
      privateKey,
      upstreams,
      inventory: windows.apply(inventory),
      onProviderError: (provider, model, body) => windows.learnFromError(provider, model, body),
      concurrentStreamsMax: config.concurrentStreamsMax,
      suspendedRetryMs: config.suspendedRetrySeconds * 1000,
      devOrigin,
      endpoints,
      log,
      signal: stop.signal,
      prices,
      status,
      receipts,
      ledgerOff: !ledger,
      onReady: () => console.log("WELLSPRING_AGENT_READY"),
      // The launcher watches this file and installs the offered release (the agent never writes its own code).
      onUpdateOffer: (offer) =>
        void writeOffer(stateDir(dataDir), offer).catch((error: unknown) => log.warn("agent.update_offer_not_saved", { error: (error as Error).message })),
    });
    // Windows learned from now on (the model list, a context-length error) reach the hub in a new inventory.
    windows.onChange(() => tunnel.announceInventory(windows.apply(inventory)));
    void windows.learnFromMetadata(upstreams, devOrigin);
    await tunnel.run();
  } finally {
    SHARED_POOL.close();
    await ledger?.close();
    await status.close();
  }
}

function exitCodeOf(error: unknown): ExitCode {
  if (error instanceof FatalTunnelError) return ExitCode.REFUSED_BY_HUB;
  if (error instanceof UpdateRequiredError) return ExitCode.UPDATE_REQUIRED;
  if (error instanceof ConfigError || error instanceof HubUrlError || error instanceof EndpointError || error instanceof ProxyConfigError)
    return ExitCode.CONFIG;
  if (error instanceof UsageError) return ExitCode.USAGE;
  return ExitCode.FAILED;
}

if (import.meta.main) {
  const [command, ...args] = Deno.args;
  const dataDir = flag(args, "data") ?? "./data";
  try {
    if (command === "serve") {
      await serve(dataDir, flag(args, "dev-upstream"), flags(args, "dev-resolve"), args.includes("--dev-no-ledger"));
      Deno.exit(ExitCode.OK); // signal listeners and the drain timer would otherwise keep the process alive
    } else if (command === "enroll") {
      const hub = flag(args, "hub");
      const token = flag(args, "token");
      const pins = flags(args, "pin");
      if (!hub || !token || pins.length === 0) throw new UsageError("usage: enroll --hub https://HOST:PORT --pin sha256/… [--pin backup] --token wse_…");
      const id = await enroll({ hubUrl: hub, pins, token, name: flag(args, "name") ?? "agent", dataDir });
      console.log(`enrolled as ${id.agentId} with hub ${id.hubId}; list your providers in ${dataDir}/config.json, then run: ./wellspring-agent start`);
    } else {
      throw new UsageError("usage: main.ts serve|enroll …");
    }
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(exitCodeOf(error));
  }
}
