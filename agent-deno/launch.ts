/**
 * The launcher: reads the agent's local files, works out the narrowest permissions the agent needs, and
 * runs src/main.ts under exactly those. This is the only part that may spawn a process (itself: Deno).
 *
 *   deno task enroll --hub https://HOST:8788 --pin sha256/… --token wse_…
 *   deno task start [--dev-upstream http://127.0.0.1:PORT]
 * Options: --data DIR (default ./data; the task grants read access to ./data only).
 */
import { loadConfig } from "./src/config.ts";
import { checkDevOrigin, upstreamHosts } from "./src/providers.ts";
import { DEV_UPSTREAM_ENV } from "./src/main.ts";

const here = new URL(".", import.meta.url).pathname;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Variables npm:ws reads at load time (feature switches, not secrets). */
const WS_ENV = ["WS_NO_BUFFER_UTIL", "WS_NO_UTF_8_VALIDATE"];

function hostPort(url: string): string {
  const u = new URL(url);
  return `${u.hostname.includes(":") ? `[${u.hostname}]` : u.hostname}:${u.port || (u.protocol === "https:" ? "443" : "80")}`;
}

async function run(args: string[], permissions: string[], env: Record<string, string> = {}): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, `${here}src/main.ts`, ...args],
    cwd: here,
    env,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => child.kill(sig));
  return (await child.status).code;
}

const [command, ...args] = Deno.args;
const dataDir = flag(args, "data") ?? "./data";
const dataAbs = dataDir.startsWith("/") ? dataDir : `${Deno.cwd()}/${dataDir}`;
let code = 2;
try {
  if (command === "enroll") {
    const hub = flag(args, "hub");
    if (!hub) throw new Error("usage: deno task enroll --hub https://HOST:PORT --pin sha256/… --token wse_…");
    await Deno.mkdir(dataAbs, { recursive: true, mode: 0o700 });
    code = await run(["enroll", ...args.filter((a, i) => a !== "--data" && args[i - 1] !== "--data"), "--data", dataAbs], [
      `--allow-net=${hostPort(hub)}`,
      `--allow-read=${dataAbs}`,
      `--allow-write=${dataAbs}`,
      `--allow-env=${WS_ENV.join(",")}`,
    ]);
  } else if (command === "start") {
    const config = await loadConfig(dataAbs);
    const identity = JSON.parse(await Deno.readTextFile(`${dataAbs}/agent.json`)) as { hubUrl: string };
    const net = [hostPort(identity.hubUrl), ...upstreamHosts(config.upstreams)];
    const env: Record<string, string> = {};
    const envNames = config.upstreams.flatMap((u) => (u.apiKeyEnv ? [u.apiKeyEnv] : []));
    for (const name of envNames) {
      const v = Deno.env.get(name);
      if (v !== undefined) env[name] = v;
    }
    const dev = flag(args, "dev-upstream");
    if (dev) {
      const origin = checkDevOrigin(dev);
      net.push(hostPort(origin));
      env[DEV_UPSTREAM_ENV] = origin;
      envNames.push(DEV_UPSTREAM_ENV);
    }
    const permissions = [`--allow-net=${net.join(",")}`, `--allow-read=${dataAbs}`, `--allow-write=${dataAbs}`];
    permissions.push(`--allow-env=${[...WS_ENV, ...envNames].join(",")}`);
    console.error(JSON.stringify({ t: new Date().toISOString(), level: "info", proc: "launcher", event: "launcher.permissions", permissions }));
    code = await run(["serve", "--data", dataAbs], permissions, env);
  } else {
    console.error("usage: deno task enroll … | deno task start [--dev-upstream http://127.0.0.1:PORT]");
  }
} catch (error) {
  console.error((error as Error).message);
  code = 1;
}
Deno.exit(code);
