/**
 * The launcher: reads the agent's local files, works out the narrowest permissions the agent needs
 * (src/permissions.ts), runs src/main.ts under exactly those, and keeps the serving agent running.
 * It is the only part that may spawn a process, and only Deno itself. Run it through `./wellspring-agent`,
 * which finds Deno and grants this file no more than it needs:
 *
 *   ./wellspring-agent enroll --hub https://HOST:PORT --pin sha256/… --token wse_… [--name N] [--data DIR]
 *       deno run --allow-read=<data> --allow-write=<data> --allow-run=<deno> launch.ts enroll … --data <data>
 *   ./wellspring-agent start [--data DIR] [--dev-upstream http://127.0.0.1:PORT]
 *       deno run --allow-read=<data> --allow-write=<data>/state --allow-run=<deno> launch.ts start … --data <data>
 *
 * `start` restarts an agent that crashed (src/restart_policy.ts) and logs each restart with the exit code; it
 * stops for good after a fatal refusal (revoked, unknown agent, bad configuration: src/exit_codes.ts) and on
 * SIGINT/SIGTERM, which it forwards to the agent. The launcher exits with the agent's last exit code.
 */
import { loadConfig, loadIdentity } from "./src/config.ts";
import { ExitCode } from "./src/exit_codes.ts";
import { parseHubUrl } from "./src/hub_url.ts";
import { checkDataDir, enrollPermissions, servePermissions, stateDir } from "./src/permissions.ts";
import { checkDevOrigin } from "./src/providers.ts";
import { RestartPolicy } from "./src/restart_policy.ts";

const here = new URL(".", import.meta.url).pathname;
const MAIN = `${here}src/main.ts`;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

/** `args` without `--name value`. */
function without(args: string[], name: string): string[] {
  return args.filter((a, i) => a !== `--${name}` && args[i - 1] !== `--${name}`);
}

function log(level: "info" | "warn" | "error", event: string, fields: Record<string, unknown> = {}): void {
  console.error(JSON.stringify({ t: new Date().toISOString(), level, proc: "launcher", event, ...fields }));
}

function spawnAgent(permissions: string[], args: string[]): Deno.ChildProcess {
  // The agent inherits the environment; its --allow-env lets it read only the variables it was granted.
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, MAIN, ...args],
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
  const child = spawnAgent(enrollPermissions(dataDir, hubOrigin), ["enroll", ...without(args, "data"), "--data", dataDir]);
  return (await child.status).code;
}

/** The state folder must be a real folder inside the data folder, not a link pointing anywhere else. */
async function ensureStateDir(dataDir: string): Promise<void> {
  const dir = stateDir(dataDir);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await Deno.lstat(dir);
  if (!info.isDirectory || info.isSymlink) throw new Error(`Cannot start agent: ${dir} must be a folder`);
}

/** Reads the local files afresh for each start, so a restart picks up an edited config.json. */
async function servePlan(dataDir: string, devUpstream: string | undefined): Promise<string[]> {
  const config = await loadConfig(dataDir);
  const identity = await loadIdentity(dataDir);
  const devOrigin = devUpstream === undefined ? null : checkDevOrigin(devUpstream);
  await ensureStateDir(dataDir);
  return servePermissions({ dataDir, hubOrigin: identity.hubUrl, config, devOrigin });
}

async function startCommand(args: string[], dataDir: string): Promise<number> {
  const devUpstream = flag(args, "dev-upstream");
  const serveArgs = ["serve", "--data", dataDir, ...(devUpstream === undefined ? [] : ["--dev-upstream", devUpstream])];
  const policy = new RestartPolicy();
  let stopping = false;
  let child: Deno.ChildProcess | null = null;
  let wake: (() => void) | null = null;
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
  for (;;) {
    let permissions: string[];
    try {
      permissions = await servePlan(dataDir, devUpstream);
    } catch (error) {
      log("error", "launcher.refused", { error: (error as Error).message });
      return ExitCode.CONFIG;
    }
    log("info", "launcher.permissions", { permissions });
    const startedAt = performance.now();
    child = spawnAgent(permissions, serveArgs);
    log("info", "launcher.agent_started", { pid: child.pid });
    const status = await child.status;
    child = null;
    const exit = { code: status.code, signal: status.signal ?? null };
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
  }
}

class UsageError extends Error {}

const [command, ...args] = Deno.args;
let code: number = ExitCode.USAGE;
try {
  const data = flag(args, "data");
  if (!data) throw new UsageError("usage: launch.ts enroll|start … --data /absolute/path (run it through ./wellspring-agent)");
  const dataDir = checkDataDir(data);
  if (command === "enroll") code = await enrollCommand(args, dataDir);
  else if (command === "start") code = await startCommand(args, dataDir);
  else throw new UsageError("usage: ./wellspring-agent enroll --hub … --pin … --token … | ./wellspring-agent start");
} catch (error) {
  console.error((error as Error).message);
  code = error instanceof UsageError ? ExitCode.USAGE : ExitCode.CONFIG;
}
Deno.exit(code);
