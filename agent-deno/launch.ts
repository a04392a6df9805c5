/**
 * The launcher: reads the agent's local files, works out the narrowest permissions the agent needs
 * (src/permissions.ts), runs the agent under exactly those, keeps it running, and updates it. It is the only
 * part that may spawn a process, and only Deno itself. Run it through `./wellspring-agent`, which finds Deno
 * and grants this file no more than it needs:
 *
 *   ./wellspring-agent enroll --hub https://HOST:PORT --pin sha256/… --token wse_… [--name N] [--data DIR]
 *       deno run --allow-read=<data> --allow-write=<data> --allow-run=<deno> launch.ts enroll … --data <data>
 *   ./wellspring-agent start [--data DIR] [--dev-upstream http://127.0.0.1:PORT [--dev-resolve HOST=IP[,IP]]… [--dev-no-ledger]]
 *       deno run --allow-read=<data> --allow-write=<data>/state,<data>/releases --allow-run=<deno> launch.ts start …
 *   ./wellspring-agent status [--data DIR] [--json]
 *       deno run --allow-read=<data> launch.ts status …
 *   ./wellspring-agent approve-update --version X.Y.Z [--net HOST:PORT]… [--env NAME]… [--data DIR]
 *       deno run --allow-read=<data> --allow-write=<data>/releases launch.ts approve-update …
 *   ./wellspring-agent ledger verify|export [--data DIR]
 *       deno run --allow-read=<data> launch.ts ledger …   (export writes the receipts to stdout)
 *
 * `start` restarts an agent that crashed (src/restart_policy.ts) and logs each restart with the exit code; it
 * stops for good after a fatal refusal (revoked, unknown agent, bad configuration: src/exit_codes.ts) and on
 * SIGINT/SIGTERM, which it forwards to the agent. It installs signed releases the hub offers (src/updates.ts):
 * the agent itself can write only `<data>/state`, never code. The launcher exits with the agent's last exit code.
 */
import { loadConfig, loadIdentity } from "./src/config.ts";
import { ExitCode } from "./src/exit_codes.ts";
import { hubNetPermission, parseHubUrl } from "./src/hub_url.ts";
import { checkDataDir, enrollPermissions, servePermissions, stateDir } from "./src/permissions.ts";
import { checkDevOrigin } from "./src/providers.ts";
import { grantedEnv, proxyEnvSet, proxyFromEnv } from "./src/egress_proxy.ts";
import { RestartPolicy } from "./src/restart_policy.ts";
import { isFresh, readStatus } from "./src/status.ts";
import { readOffer } from "./src/update_offer.ts";
import { exportLedger, ledgerSummary, verifyLedger } from "./src/ledger_cli.ts";
import {
  approve,
  beginTrial,
  bootTarget,
  commitTrial,
  installStaged,
  markFailed,
  newest,
  readState,
  releasesDir,
  rollBackTrial,
  stagingDir,
  trustedKeys,
  UPDATE_HEALTH_TIMEOUT_MS,
  UpdateRefusedError,
  wantedVersion,
} from "./src/updates.ts";
import { AGENT_VERSION as INSTALLED_VERSION } from "./src/version.ts";
// The release keys this install pins (docs/operations/agent.md, "Updates"), part of the install like its code.
import RELEASE_KEYS from "./release-keys.json" with { type: "json" };
import { compareVersions, isVersion, updateAvailable, type UpdateAvailable } from "../protocol/src/mod.ts";

const here = new URL(".", import.meta.url).pathname;
const MAIN = `${here}src/main.ts`;
const FETCHER = `${here}src/release_fetch.ts`;

/** How often the launcher looks at the offer the agent keeps (`state/update-offer.json`), ms. */
export const UPDATE_OFFER_POLL_MS = 1_000;
/** How often the launcher asks the hub itself for the latest release (in case the agent cannot say), ms. */
export const UPDATE_CHECK_INTERVAL_MS = 6 * 3_600_000;
/** Waits after a download that failed for a reason a retry may cure (network, hub away), ms: doubling. */
const DOWNLOAD_RETRY_MIN_MS = 30_000;
const DOWNLOAD_RETRY_MAX_MS = 3_600_000;
/** How often the trial's health is looked at, ms. */
const HEALTH_POLL_MS = 250;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

function flags(args: string[], name: string): string[] {
  return args.flatMap((a, i) => (a === `--${name}` && args[i + 1] ? [args[i + 1]!] : []));
}

/** `args` without `--name value`. */
function without(args: string[], name: string): string[] {
  return args.filter((a, i) => a !== `--${name}` && args[i - 1] !== `--${name}`);
}

function log(level: "info" | "warn" | "error", event: string, fields: Record<string, unknown> = {}): void {
  console.error(JSON.stringify({ t: new Date().toISOString(), level, proc: "launcher", event, ...fields }));
}

function spawnAgent(permissions: string[], script: string, args: string[]): Deno.ChildProcess {
  // The agent inherits the environment; its --allow-env lets it read only the variables it was granted.
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, script, ...args],
    cwd: here,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
}

async function enrollCommand(args: string[], dataDir: string): Promise<number> {
  const hub = flag(args, "hub");
  if (!hub) throw new UsageError("usage: ./wellspring-agent enroll --hub https://HOST:PORT --pin sha256/… --token wse_… [--name NAME]");
  const hubOrigin = parseHubUrl(hub);
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const child = spawnAgent(enrollPermissions(dataDir, hubOrigin), MAIN, ["enroll", ...without(args, "data"), "--data", dataDir]);
  return (await child.status).code;
}

/** The state folder must be a real folder inside the data folder, not a link pointing anywhere else. */
async function ensureStateDir(dataDir: string): Promise<void> {
  const dir = stateDir(dataDir);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await Deno.lstat(dir);
  if (!info.isDirectory || info.isSymlink) throw new Error(`Cannot start agent: ${dir} must be a folder`);
}

/**
 * Reads the local files afresh for each start, so a restart picks up an edited config.json. `extra` are the
 * permissions a release asked for and the owner approved (empty for every ordinary release).
 */
async function servePlan(dataDir: string, devUpstream: string | undefined, extra: { net: string[]; env: string[] }): Promise<string[]> {
  const config = await loadConfig(dataDir);
  const identity = await loadIdentity(dataDir);
  const devOrigin = devUpstream === undefined ? null : checkDevOrigin(devUpstream);
  await ensureStateDir(dataDir);
  // HTTPS_PROXY / NO_PROXY in the launcher's environment (the agent inherits it): checked here, granted narrowly.
  const proxy = proxyFromEnv(grantedEnv);
  const permissions = servePermissions({
    dataDir,
    hubOrigin: identity.hubUrl,
    config,
    devOrigin,
    proxy: proxy ? { address: proxy.address, env: proxyEnvSet(grantedEnv) } : null,
  });
  if (extra.net.length === 0 && extra.env.length === 0) return permissions;
  return permissions.map((p) =>
    p.startsWith("--allow-net=") && extra.net.length > 0
      ? `${p},${extra.net.join(",")}`
      : p.startsWith("--allow-env=") && extra.env.length > 0
        ? `${p},${extra.env.join(",")}`
        : p,
  );
}

/** Runs the release fetcher (network to the hub only, writes only the staging folder); its exit code and report. */
async function runFetcher(dataDir: string, hubOrigin: string, args: string[]): Promise<{ code: number; report: Record<string, unknown> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      `--allow-net=${hubNetPermission(hubOrigin)}`,
      `--allow-read=${dataDir}`,
      `--allow-write=${stagingDir(dataDir)}`,
      FETCHER,
      ...args,
      "--data",
      dataDir,
    ],
    cwd: here,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = await child.output();
  const last = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
  let report: Record<string, unknown> = {};
  try {
    report = JSON.parse(last) as Record<string, unknown>;
  } catch {
    report = { ok: false, reason: "unreachable", message: "the fetcher printed no report" };
  }
  return { code: out.code, report };
}

async function removeStaging(dataDir: string): Promise<void> {
  await Deno.remove(stagingDir(dataDir), { recursive: true }).catch(() => {});
}

async function startCommand(args: string[], dataDir: string): Promise<number> {
  const devUpstream = flag(args, "dev-upstream");
  const serveArgs = [
    "serve",
    "--data",
    dataDir,
    ...(devUpstream === undefined ? [] : ["--dev-upstream", devUpstream]),
    // Development answers for the endpoint check (src/endpoint_check.ts); the agent refuses them without --dev-upstream.
    ...flags(args, "dev-resolve").flatMap((spec) => ["--dev-resolve", spec]),
    // No edge ledger (benchmarks measuring its cost); the agent refuses it without --dev-upstream.
    ...(args.includes("--dev-no-ledger") ? ["--dev-no-ledger"] : []),
  ];
  const policy = new RestartPolicy();
  let stopping = false;
  let child: Deno.ChildProcess | null = null;
  let wake: (() => void) | null = null;
  /** An update is in progress, from its download to the trial's commit or rollback. */
  let updating = false;
  /** The launcher stopped the agent itself (to boot a trial, or to roll one back): restart at once. */
  let restartRequested = false;
  /** Why the running trial is being stopped (it failed its health check). */
  let trialFailure: string | null = null;
  const downloadRetry = new Map<string, { at: number; waitMs: number }>();
  /** Offered versions older than what runs, already reported (each once). */
  const olderReported = new Set<string>();
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => {
      stopping = true;
      try {
        child?.kill(sig);
      } catch {
        /* already exited */
      }
      wake?.();
    });
  }

  let keys = await trustedKeys(RELEASE_KEYS, dataDir);
  if (!keys) log("warn", "launcher.updates_off", { note: "no release keys are pinned in release-keys.json: this agent does not update itself" });
  await removeStaging(dataDir);

  const hubOrigin = async () => (await loadIdentity(dataDir)).hubUrl;

  /** Looks for a newer release (the agent's last offer, or the hub asked directly) and installs it as a trial. */
  const maybeUpdate = async (trigger: "offer" | "check" | "refused"): Promise<void> => {
    if (updating || stopping || !keys) return;
    updating = true;
    let staged: string | null = null;
    let trialBegun = false;
    try {
      let offer: UpdateAvailable | null;
      if (trigger === "offer") offer = await readOffer(stateDir(dataDir));
      else {
        const asked = await runFetcher(dataDir, await hubOrigin(), ["latest"]);
        offer = asked.code === 0 ? updateAvailable((asked.report as { offer?: unknown }).offer, "offer") : null;
        if (!offer) log("warn", "launcher.update_check_failed", { trigger, reason: asked.report.reason, error: asked.report.message });
      }
      const state = await readState(dataDir, log);
      if (state.trial) return;
      const latest = offer?.latestVersion ?? null;
      const runningNow = newest(state.current, INSTALLED_VERSION);
      if (latest && isVersion(latest) && compareVersions(latest, runningNow) < 0 && !olderReported.has(latest)) {
        olderReported.add(latest);
        log("error", "launcher.update_refused", {
          version: latest,
          reason: "not_newer",
          error: `the hub offers ${latest}, older than ${runningNow}, which this agent runs: versions only move forward`,
        });
      }
      const version = wantedVersion(offer, state, INSTALLED_VERSION, Date.now());
      if (!version) return;
      const retry = downloadRetry.get(version);
      if (retry && Date.now() < retry.at) return;
      const running = newest(state.current, INSTALLED_VERSION);
      log("info", "launcher.update_started", { version, running, trigger });
      staged = `${stagingDir(dataDir)}/${version}-${crypto.randomUUID().slice(0, 8)}`;
      await Deno.mkdir(stagingDir(dataDir), { recursive: true, mode: 0o755 });
      const fetched = await runFetcher(dataDir, await hubOrigin(), ["download", "--version", version, "--out", staged]);
      if (fetched.code !== 0) {
        if (fetched.code === 2) {
          log("error", "launcher.update_refused", { version, reason: fetched.report.reason, error: fetched.report.message });
          await markFailed(dataDir, version, String(fetched.report.reason));
        } else {
          const waitMs = Math.min(DOWNLOAD_RETRY_MAX_MS, (retry?.waitMs ?? DOWNLOAD_RETRY_MIN_MS / 2) * 2);
          downloadRetry.set(version, { at: Date.now() + waitMs, waitMs });
          log("warn", "launcher.update_download_failed", { version, error: fetched.report.message, retryInMs: waitMs });
        }
        return;
      }
      downloadRetry.delete(version);
      log("info", "launcher.update_downloaded", { version });
      const manifest = await installStaged({
        dataDir,
        staged,
        version,
        keys,
        newerThan: newest(state.highest, INSTALLED_VERSION),
        hubProtocol: offer!.protocolVersion,
        now: new Date(),
      });
      staged = null;
      keys = (await trustedKeys(RELEASE_KEYS, dataDir)) ?? keys; // a release may rotate the keys
      await beginTrial(dataDir, version);
      trialBegun = true;
      log("info", "launcher.update_swapped", { version, previous: state.current, extraPermissions: manifest.permissions });
      // Stop the running agent (it drains its streams); the loop boots the trial and checks its health.
      restartRequested = true;
      if (child) child.kill("SIGTERM");
      else wake?.();
    } catch (error) {
      if (error instanceof UpdateRefusedError) {
        log("error", "launcher.update_refused", { version: error.version, reason: error.reason, error: error.message });
        await markFailed(dataDir, error.version, error.reason).catch(() => {});
      } else log("error", "launcher.update_failed", { trigger, error: (error as Error).message });
    } finally {
      if (staged) await Deno.remove(staged, { recursive: true }).catch(() => {});
      if (!trialBegun) updating = false;
    }
  };

  const offerTimer = keys ? setInterval(() => void maybeUpdate("offer"), UPDATE_OFFER_POLL_MS) : null;
  const checkTimer = keys ? setInterval(() => void maybeUpdate("check"), UPDATE_CHECK_INTERVAL_MS) : null;

  /** Commits the trial once its agent reports the trial's version and a ready tunnel; stops it after the timeout. */
  const watchTrial = (proc: Deno.ChildProcess, version: string, exited: () => boolean): void => {
    const deadline = Date.now() + UPDATE_HEALTH_TIMEOUT_MS;
    const tick = async (): Promise<void> => {
      if (exited() || stopping) return;
      const s = await readStatus(stateDir(dataDir));
      if (s && s.pid === proc.pid && s.version === version && s.connected && isFresh(s)) {
        await commitTrial(dataDir, version);
        updating = false;
        log("info", "launcher.update_committed", { version });
        return;
      }
      if (Date.now() > deadline) {
        trialFailure = `no ready tunnel reported within ${UPDATE_HEALTH_TIMEOUT_MS} ms`;
        try {
          proc.kill("SIGTERM");
        } catch {
          /* gone */
        }
        return;
      }
      setTimeout(() => void tick(), HEALTH_POLL_MS);
    };
    void tick();
  };

  try {
    for (;;) {
      let permissions: string[];
      let boot;
      try {
        boot = await bootTarget({ dataDir, installMain: MAIN, installVersion: INSTALLED_VERSION, keys, log });
        permissions = await servePlan(dataDir, devUpstream, boot.extra);
      } catch (error) {
        log("error", "launcher.refused", { error: (error as Error).message });
        return ExitCode.CONFIG;
      }
      log("info", "launcher.boot", { version: boot.version, source: boot.source, trial: boot.trial, verified: boot.source === "release" });
      log("info", "launcher.permissions", { permissions });
      const startedAt = performance.now();
      const proc = spawnAgent(permissions, boot.script, serveArgs);
      child = proc;
      log("info", "launcher.agent_started", { pid: proc.pid, version: boot.version });
      let exitedFlag = false;
      if (boot.trial) {
        updating = true;
        trialFailure = null;
        watchTrial(proc, boot.version, () => exitedFlag);
      }
      const status = await proc.status;
      exitedFlag = true;
      child = null;
      const exit = { code: status.code, signal: status.signal ?? null };
      if (boot.trial && !stopping && (await readState(dataDir)).trial?.version === boot.version) {
        // The trial ended before it was committed: it failed. Back to the release it replaced, at once.
        const reason = trialFailure ?? `the agent exited (code ${exit.code}${exit.signal ? `, ${exit.signal}` : ""}) before it reported a ready tunnel`;
        await rollBackTrial(dataDir, boot.version, reason);
        updating = false;
        log("error", "launcher.update_rolled_back", { version: boot.version, reason });
        continue;
      }
      if (restartRequested && !stopping) {
        restartRequested = false;
        continue;
      }
      if (exit.signal === null && exit.code === ExitCode.UPDATE_REQUIRED && !stopping) {
        log("warn", "launcher.update_required", { running: boot.version, note: "the hub refuses this version; looking for a signed update" });
        await maybeUpdate("refused");
        if (restartRequested) {
          restartRequested = false;
          continue;
        }
      }
      const decision = policy.decide(exit, performance.now() - startedAt, stopping);
      if (!decision.restart) {
        log(decision.reason === "fatal" ? "error" : "info", "launcher.agent_stopped", { exitCode: exit.code, signal: exit.signal, reason: decision.reason });
        return exit.code;
      }
      log("warn", "launcher.agent_restarting", { exitCode: exit.code, signal: exit.signal, attempt: decision.attempt, inMs: decision.delayMs });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, decision.delayMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
      if (stopping) {
        log("info", "launcher.agent_stopped", { exitCode: exit.code, signal: exit.signal, reason: "stopped" });
        return ExitCode.OK;
      }
      restartRequested = false;
    }
  } finally {
    if (offerTimer) clearInterval(offerTimer);
    if (checkTimer) clearInterval(checkTimer);
  }
}

/** `./wellspring-agent status`: the agent's own report, read from its status file. Exit 0 when running and connected. */
async function statusCommand(args: string[], dataDir: string): Promise<number> {
  const s = await readStatus(stateDir(dataDir));
  const state = await readState(dataDir);
  const keys = await trustedKeys(RELEASE_KEYS, dataDir);
  const offer = await readOffer(stateDir(dataDir));
  const running = s !== null && isFresh(s);
  const healthy = running && s.connected;
  if (args.includes("--json")) {
    console.log(
      JSON.stringify(
        { running, healthy, status: s, releases: state, offer, releaseKeys: keys ? { serial: keys.serial, keys: keys.keys.map((k) => k.keyId) } : null },
        null,
        2,
      ),
    );
    return healthy ? 0 : 1;
  }
  const lines: string[] = [];
  if (!s) lines.push(`agent: never started in ${dataDir} (no state/status.json)`);
  else {
    const age = Math.round((Date.now() - Date.parse(s.updatedAt)) / 1000);
    lines.push(`agent ${s.agentId}, version ${s.version}${s.version === INSTALLED_VERSION ? " (installed)" : ` (release; installed ${INSTALLED_VERSION})`}`);
    lines.push(
      running
        ? `running: yes (pid ${s.pid}, status ${age} s old)`
        : s.stoppedAt
          ? `running: no (stopped at ${s.stoppedAt})`
          : `running: no (last status ${s.updatedAt}, ${age} s ago)`,
    );
    lines.push(
      s.connected
        ? `hub: ${s.hubUrl}, connected since ${s.connectedSince} (session ${s.sessionId})`
        : `hub: ${s.hubUrl}, not connected${s.lastCloseCode !== null ? ` (last close code ${s.lastCloseCode} at ${s.lastDisconnectedAt})` : ""}`,
    );
    lines.push(`today (UTC ${s.today.day}): ${s.today.forwarded} calls forwarded to providers, ${s.today.completed} completed`);
    lines.push(`prices: ${s.priceVer === null ? "none received yet" : `official version ${s.priceVer}`}`);
    lines.push(`provider calls: ${s.proxy ? `through proxy ${s.proxy} (HTTPS_PROXY; NO_PROXY hosts go direct)` : "direct (no HTTPS_PROXY)"}`);
    if (s.memory) {
      const m = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
      lines.push(
        `memory: resident ${m(s.memory.rssBytes)}; JavaScript heap ${m(s.memory.heapUsedBytes)} used of ${m(s.memory.heapTotalBytes)}; buffers ${m(s.memory.externalBytes)} (as of the status)`,
      );
    }
    lines.push(ledgerSummary(dataDir));
  }
  const failed = Object.entries(state.failed).map(([v, f]) => `${v} (${f.reason}, ${f.at})`);
  lines.push(
    `updates: ${keys ? `${keys.keys.length} release keys pinned (serial ${keys.serial})` : "off (no release keys pinned)"}; ` +
      `hub offers ${offer?.latestVersion ?? "nothing"}${offer?.minimumVersion ? `, requires ≥ ${offer.minimumVersion}` : ""}; ` +
      `current release ${state.current ?? "none (installed agent)"}${state.trial ? `, trying ${state.trial.version}` : ""}${failed.length ? `; refused or rolled back: ${failed.join(", ")}` : ""}`,
  );
  console.log(lines.join("\n"));
  return healthy ? 0 : 1;
}

/** `./wellspring-agent approve-update`: the owner grants a release the extra permissions it asked for. */
async function approveCommand(args: string[], dataDir: string): Promise<number> {
  const version = flag(args, "version");
  if (!version || !isVersion(version)) throw new UsageError("usage: ./wellspring-agent approve-update --version X.Y.Z [--net HOST:PORT]… [--env NAME]…");
  const net = flags(args, "net");
  const env = flags(args, "env");
  for (const n of net) if (!/^[a-z0-9.-]+:\d{1,5}$/.test(n)) throw new UsageError(`--net ${n}: give HOST:PORT`);
  for (const e of env) if (!/^[A-Z_][A-Z0-9_]*$/.test(e)) throw new UsageError(`--env ${e}: give a variable name`);
  await Deno.mkdir(releasesDir(dataDir), { recursive: true, mode: 0o755 });
  await approve(dataDir, version, { net, env });
  console.log(
    `release ${version} may use, beyond what this agent's files grant: ${[...net.map((n) => `network ${n}`), ...env.map((e) => `variable ${e}`)].join(", ") || "nothing more"}. It is installed at the next offer (within seconds while the agent runs).`,
  );
  return ExitCode.OK;
}

/** `./wellspring-agent ledger verify|export`: checks the agent's receipts, or writes them to stdout (src/ledger_cli.ts). */
async function ledgerCommand(args: string[], dataDir: string): Promise<number> {
  const sub = args[0];
  if (sub === "verify") {
    const report = await verifyLedger(dataDir);
    console.log(report.lines.join("\n"));
    return report.ok ? ExitCode.OK : ExitCode.FAILED;
  }
  if (sub === "export") {
    const bytes = exportLedger(dataDir);
    let o = 0;
    while (o < bytes.length) o += await Deno.stdout.write(bytes.subarray(o));
    return ExitCode.OK;
  }
  throw new UsageError("usage: ./wellspring-agent ledger verify|export [--data DIR]  (export writes the receipts to stdout)");
}

class UsageError extends Error {}

const [command, ...args] = Deno.args;
let code: number = ExitCode.USAGE;
try {
  const data = flag(args, "data");
  if (!data) throw new UsageError("usage: launch.ts enroll|start|status|approve-update|ledger … --data /absolute/path (run it through ./wellspring-agent)");
  const dataDir = checkDataDir(data);
  if (command === "enroll") code = await enrollCommand(args, dataDir);
  else if (command === "start") code = await startCommand(args, dataDir);
  else if (command === "status") code = await statusCommand(args, dataDir);
  else if (command === "approve-update") code = await approveCommand(args, dataDir);
  else if (command === "ledger") code = await ledgerCommand(args, dataDir);
  else
    throw new UsageError("usage: ./wellspring-agent enroll --hub … --pin … --token … | start | status | approve-update --version X.Y.Z | ledger verify|export");
} catch (error) {
  console.error((error as Error).message);
  code = error instanceof UsageError ? ExitCode.USAGE : ExitCode.CONFIG;
}
Deno.exit(code);
