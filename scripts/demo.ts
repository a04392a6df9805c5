/**
 * `npm run demo [-- --upstream http://127.0.0.1:PORT] [--gateways N]`: the hub, the mock provider (or the given
 * loopback origin), one enrolled Deno agent serving gpt-4o-mini, gpt-4o, text-embedding-3-small, claude-haiku-4-5
 * and claude-sonnet-4-5, and the portal. With `--gateways N`, N gateways share the database and Redis (REDIS_URL,
 * or a `redis-server` started for the demo when the machine has one), each with an agent of its own. When the
 * API is ready it prints WELLSPRING_BASE_URL=… (the first gateway), WELLSPRING_BASE_URLS=… (all, comma-separated)
 * and WELLSPRING_API_KEY=…; when the portal is ready, a sign-in for the demo user and the demo key owner (fresh
 * passwords each start). Runs until Ctrl-C.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import { rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { hashPassword, newId, randomToken } from "@wellspring/db";
import { startMockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../gateway/src/ops/keys.ts";
import { gatewayOptionsFromEnv, parseEnv } from "../gateway/src/env.ts";
import { bootHubFromEnv, hubGatewayOptions } from "../gateway/src/hub.ts";
import { createLogger } from "../gateway/src/log.ts";
import { startGateway, type Gateway } from "../gateway/src/server.ts";
import { createEnrollmentToken } from "../gateway/src/ops/enrollment.ts";
import { Treasury } from "../gateway/src/ops/treasury.ts";
import { portalEnv, startPortal } from "./portal.ts";

const DEMO_USER_EMAIL = "demo@wellspring.local";
const DEMO_OWNER_EMAIL = "owner@wellspring.local";
/** A password made for one demo run: 16 base32 characters (80 bits). */
const demoPassword = () => randomToken(16);

/** Credit the demo user starts with, micro-USD ($10). */
const DEMO_CREDIT_MICROS = 10_000_000n;

const root = resolve(import.meta.dirname, "..");
const agentDir = join(root, "agent-deno");
/** The owner's command (agent-deno/wellspring-agent), with --dev-upstream so provider calls reach the mock. */
const launcher = join(agentDir, "wellspring-agent");
const args = process.argv.slice(2);
const upstreamArg = args.indexOf("--upstream") >= 0 ? args[args.indexOf("--upstream") + 1] : undefined;
/** Gateways the demo starts at most. */
const DEMO_GATEWAYS_MAX = 8;
const gatewaysArg = args.indexOf("--gateways") >= 0 ? args[args.indexOf("--gateways") + 1] : "1";
const gatewayCount = Number(gatewaysArg);
if (!Number.isInteger(gatewayCount) || gatewayCount < 1 || gatewayCount > DEMO_GATEWAYS_MAX) {
  console.error(`demo: --gateways must be a whole number from 1 to ${DEMO_GATEWAYS_MAX}`);
  process.exit(64);
}

const env = parseEnv({ DATA_DIR: ".data/demo", ...process.env });
const log = createLogger({ proc: "demo" }, env.LOG_LEVEL === "info" ? "warn" : env.LOG_LEVEL);
const children: ChildProcess[] = [];

function run(cmd: string, argv: string[], opts: { cwd: string; env?: Record<string, string> }, readyPattern: RegExp): Promise<ChildProcess> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, argv, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let done = false;
    const tail: string[] = [];
    for (const s of [child.stdout, child.stderr]) {
      createInterface({ input: s }).on("line", (line) => {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        if (process.env.DEMO_VERBOSE) console.error(line);
        if (!done && readyPattern.test(line)) {
          done = true;
          resolvePromise(child);
        }
      });
    }
    child.on("exit", (code) => {
      if (!done) reject(new Error(`${cmd.split("/").pop()} ${argv[0]} exited (${code}):\n${tail.join("\n")}`));
    });
  });
}

const hub = await bootHubFromEnv(env, log);
const mock = upstreamArg ? null : await startMockProvider();
const upstream = upstreamArg ?? mock!.origin;

/** A free loopback port. */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Several gateways share limits through Redis: REDIS_URL, else the machine's redis-server started for the demo. */
async function demoRedisUrl(): Promise<string | null> {
  if (env.REDIS_URL || gatewayCount === 1) return env.REDIS_URL ?? null;
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" });
  } catch {
    console.error("demo: --gateways needs Redis: set REDIS_URL, or install redis-server (apt-get install redis-server)");
    process.exit(64);
  }
  const port = await freePort();
  await run("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { cwd: root }, /Ready to accept connections/);
  return `redis://127.0.0.1:${port}`;
}

const redisUrl = await demoRedisUrl();
const gateways: Gateway[] = [];
for (let i = 0; i < gatewayCount; i++) {
  const base = gatewayOptionsFromEnv(env);
  gateways.push(
    await startGateway({
      ...base,
      // The first gateway on the configured ports, the others on free ones.
      ...(i === 0 ? {} : { apiPort: 0, agentPort: 0, adminPort: 0 }),
      // The demo's agents call the mock provider (or --upstream) through --dev-upstream: the demo hub runs in
      // development mode, which admits them. `npm start` does not.
      tunnel: { ...base.tunnel, developmentAgentsAllowed: true },
      redisUrl,
      ...hubGatewayOptions(hub),
      log,
      gatewayId: newId("gw"),
    }),
  );
}
const gateway = gateways[0]!;

// A demo end user with a key, and a key owner with one agent.
// Both sign in to the portal with a password made for this run (printed below, never stored in clear).
const userPassword = demoPassword();
const ownerPassword = demoPassword();
const [userHash, ownerHash] = await Promise.all([hashPassword(userPassword), hashPassword(ownerPassword)]);
const user = await hub.db.user.upsert({
  where: { email: DEMO_USER_EMAIL },
  create: { id: newId("usr"), email: DEMO_USER_EMAIL, passwordHash: userHash },
  update: { passwordHash: userHash },
});
const owner = await hub.db.user.upsert({
  where: { email: DEMO_OWNER_EMAIL },
  create: { id: newId("usr"), email: DEMO_OWNER_EMAIL, isOwner: true, passwordHash: ownerHash },
  update: { passwordHash: ownerHash },
});
const key = await issueKey(hub.db, user.id, `demo ${new Date().toISOString()}`);
// The demo user starts with $10 of credit (granted once per data directory, like a welcome grant).
const treasuryPool = new pg.Pool({ connectionString: hub.databaseUrl, max: 1 });
await new Treasury(treasuryPool).grant("system:demo", user.id, DEMO_CREDIT_MICROS, "demo welcome credit", `demo-welcome-${user.id}`);
await treasuryPool.end();
/** Enrolls an agent of the demo owner and starts it against `gw` (one per gateway: each routes to its own agents). */
async function startDemoAgent(n: number, gw: Gateway): Promise<void> {
  const name = n === 0 ? "demo-agent" : `demo-agent-${n + 1}`;
  const { token } = await createEnrollmentToken(hub.db, owner.id, name);
  const agentData = join(hub.dataDir, n === 0 ? "agent" : `agent-${n + 1}`);
  await rm(agentData, { recursive: true, force: true });
  const enroll = await run(
    launcher,
    ["enroll", "--data", agentData, "--hub", gw.agentOrigin, "--pin", hub.tls.pin, "--token", token, "--name", name],
    { cwd: agentDir },
    /enrolled as/,
  );
  await new Promise((r) => enroll.once("exit", r));
  await writeFile(
    join(agentData, "config.json"),
    JSON.stringify(
      {
        name,
        logLevel: "warn",
        upstreams: [
          { provider: "openai", apiKeyEnv: "OPENAI_API_KEY", models: ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"] },
          { provider: "anthropic", apiKeyEnv: "ANTHROPIC_API_KEY", models: ["claude-haiku-4-5", "claude-sonnet-4-5"] },
        ],
      },
      null,
      2,
    ),
    { mode: 0o600 },
  );
  await run(
    launcher,
    ["start", "--data", agentData, "--dev-upstream", upstream],
    {
      cwd: agentDir,
      env: { OPENAI_API_KEY: process.env.OPENAI_API_KEY ?? "sk-demo-owner-openai", ANTHROPIC_API_KEY: process.env.ANTHROPIC_API_KEY ?? "sk-ant-demo-owner" },
    },
    /WELLSPRING_AGENT_READY/,
  );
  // Wait until the gateway routes the demo models.
  for (let i = 0; i < 100 && !gw.registry.serves("anthropic", "claude-haiku-4-5"); i++) await new Promise((r) => setTimeout(r, 50));
}
for (let n = 0; n < gateways.length; n++) await startDemoAgent(n, gateways[n]!);

console.error(`demo: hub ${hub.hubId}, upstream ${upstream}${mock ? " (built-in mock provider)" : ""}; Ctrl-C stops everything`);
console.log(`WELLSPRING_BASE_URL=${gateway.apiOrigin}`);
console.log(`WELLSPRING_BASE_URLS=${gateways.map((g) => g.apiOrigin).join(",")}`);
console.log(`WELLSPRING_API_KEY=${key.secret}`);

// The portal: built first when it has no build yet (about a minute; the API above already works).
const webPort = Number(process.env.WEB_PORT ?? 3000);
const webEnv = await portalEnv({
  dataDir: hub.dataDir,
  databaseUrl: hub.databaseUrl,
  apiOrigin: gateway.apiOrigin,
  adminOrigin: gateway.adminOrigin,
  host: env.HOST,
  port: webPort,
});
const portal = startPortal({ root, host: env.HOST, port: webPort, env: webEnv, log, output: process.env.DEMO_VERBOSE ? "inherit" : "quiet" });
if (portal.building) console.error(`demo: building the portal for ${portal.origin} (about a minute; the API works already)`);
portal.onExit((code) => {
  console.error(`demo: the portal exited (${code})`);
  stop();
});
portal.ready.then(
  () => {
    console.log(`Portal: ${portal.origin}/signin`);
    console.log(`  sign in as ${DEMO_USER_EMAIL} / ${userPassword}   (the demo user: key, usage, balance)`);
    console.log(`  or as ${DEMO_OWNER_EMAIL} / ${ownerPassword}   (the demo key owner: agent, earnings)`);
  },
  (error: unknown) => {
    console.error(`demo: the portal did not start: ${(error as Error).message}`);
    stop();
  },
);

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  for (const c of children) c.kill("SIGTERM");
  void portal
    .stop()
    .then(() => Promise.all(gateways.map((g) => g.close())))
    .then(() => mock?.close())
    .then(() => hub.close())
    .finally(() => process.exit(0));
}
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, stop);
