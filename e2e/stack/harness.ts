/**
 * Whole-stack test harness: a fresh PostgreSQL database, the mock provider, the gateway as its own Node
 * process and a real Deno agent process (enrolled through the launcher, run under its permission flags).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, mkdtemp, readdir, readFile, stat, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { createDb, DEFAULT_PRICE_TABLE, deployMigrations, newId, publishPriceVersion, type Db } from "@wellspring/db";
import { startMockProvider, type MockOptions, type MockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { createEnrollmentToken } from "../../gateway/src/ops/enrollment.ts";
import { Ledger } from "../../gateway/src/billing/ledger.ts";

/** The admin API token every test gateway is started with. */
export const TEST_ADMIN_TOKEN = "test-admin-token-0123456789abcdef";
/** What the default test user is funded with, micro-USD ($1,000): enough for every non-billing test's traffic. */
export const TEST_USER_FUNDING_MICROS = 1_000_000_000n;

export const ROOT = resolve(import.meta.dirname, "../..");
export const DENO = join(ROOT, "node_modules/.bin/deno");
/** The owner's one command (agent-deno/wellspring-agent): finds Deno and runs the launcher. */
export const AGENT_LAUNCHER = join(ROOT, "agent-deno/wellspring-agent");
export const TSX = join(ROOT, "node_modules/.bin/tsx");
/**
 * How the gateway is started, as `npm run gateway` and the image start it: tsx's loader inside the gateway's own
 * Node process (`node --import tsx`), not the tsx command, which runs the program in a second Node process and
 * stays beside it (~47 MiB RSS doing nothing; docs/performance.md, "Memory").
 */
export const GATEWAY_COMMAND = [process.execPath, "--import", "tsx", "gateway/src/main.ts"] as const;
const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";

export interface TestDatabase {
  url: string;
  db: Db;
  drop(): Promise<void>;
}

let templateName: Promise<string> | null = null;

/** The template database for the current migrations, built once per machine (test files in parallel race safely). */
function migratedTemplate(): Promise<string> {
  templateName ??= (async () => {
    const files = (await readdir(join(ROOT, "prisma/migrations"), { recursive: true })).sort();
    const hash = createHash("sha256");
    for (const f of files) {
      const path = join(ROOT, "prisma/migrations", f);
      if ((await stat(path)).isFile())
        hash
          .update(f)
          .update("\0")
          .update(await readFile(path))
          .update("\0");
    }
    const name = `ws_template_${hash.digest("hex").slice(0, 16)}`;
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    try {
      const found = await admin.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [name]);
      if (found.rowCount) return name;
      // Built under a name of its own, then renamed: a template is never seen half migrated.
      const building = `${name}_${newId("hub").slice(4, 14)}`;
      await admin.query(`CREATE DATABASE "${building}"`);
      const url = new URL(ADMIN_URL);
      url.pathname = `/${building}`;
      await deployMigrations(url.toString());
      // The schema engine's connection may outlive its call by a moment; a database being renamed must have none.
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [building]);
      try {
        await admin.query(`ALTER DATABASE "${building}" RENAME TO "${name}"`);
      } catch (e) {
        // Another process built it meanwhile.
        await admin.query(`DROP DATABASE IF EXISTS "${building}" WITH (FORCE)`);
        if ((e as { code?: string }).code !== "42P04") throw e;
      }
      return name;
    } finally {
      await admin.end();
    }
  })();
  return templateName;
}

/**
 * A database that every migration has been deployed to, cloned per test from a template the first caller builds
 * (named by a hash of the migrations, so a changed migration builds a new one). Deploying 26 migrations through
 * the Wasm schema engine takes 2–6 s; a clone takes about one. The migrations themselves are tested on fresh
 * databases in prisma/test/migrations.test.ts.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `ws_test_${newId("hub").slice(4)}`;
  const template = await migratedTemplate();
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const db = createDb(url.toString(), { poolConnectionsMax: 4 });
  return {
    url: url.toString(),
    db,
    async drop() {
      await db.$disconnect();
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
    },
  };
}

export interface Proc {
  child: ChildProcess;
  lines: string[];
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function startProc(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Proc {
  // Its own process group, so a stop reaches every descendant, as Ctrl-C in a terminal would.
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line);
      if (process.env.STACK_DEBUG) console.log(`[${cmd.split("/").pop()}] ${line}`);
      for (const w of [...waiters]) w();
    });
  }
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return {
    child,
    lines,
    waitForLine(pattern, timeoutMs) {
      return new Promise((resolvePromise, reject) => {
        const check = () => {
          for (const l of lines) {
            const m = l.match(pattern);
            if (m) {
              waiters.delete(check);
              clearTimeout(timer);
              resolvePromise(m);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; output:\n${lines.slice(-30).join("\n")}`));
        }, timeoutMs);
        waiters.add(check);
        child.once("exit", (code) =>
          setTimeout(() => {
            check();
            if (waiters.has(check)) {
              waiters.delete(check);
              clearTimeout(timer);
              reject(new Error(`process exited (${code}) before a line matching ${pattern}; output:\n${lines.slice(-30).join("\n")}`));
            }
          }, 50),
        );
        check();
      });
    },
    async stop(signal = "SIGTERM") {
      const group = (sig: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, sig);
        } catch {
          /* already gone */
        }
      };
      if (child.exitCode !== null || child.signalCode !== null) {
        group("SIGKILL"); // leave no descendant behind
        return child.exitCode;
      }
      group(signal);
      const timer = setTimeout(() => group("SIGKILL"), 12_000);
      const code = await exited;
      clearTimeout(timer);
      group("SIGKILL");
      return code;
    },
  };
}

export interface GatewayProc extends Proc {
  apiOrigin: string;
  agentOrigin: string;
  /** The admin listener: `/admin/v1/…` and `/metrics`. */
  adminOrigin: string;
  pin: string;
  hubId: string;
  dataDir: string;
}

/**
 * How long a gateway may take to start (tsx compiles it on each start). Quiet: a few seconds; one restart of the
 * edge ledger's fault script at load ~20 took over 30 s (the earlier bound), failing a 200-cycle run at cycle ~130.
 */
export const GATEWAY_READY_TIMEOUT_MS = 90_000;

/** The machine's Redis, shared by helpers and tests: every test run uses its own key prefix, never FLUSHDB. */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export async function startGatewayProc(
  databaseUrl: string,
  env: Record<string, string> = {},
  dataDir?: string,
  readyTimeoutMs = GATEWAY_READY_TIMEOUT_MS,
): Promise<GatewayProc> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), "ws-gw-")));
  const [node, ...args] = GATEWAY_COMMAND;
  const proc = startProc(node, args, {
    // Leases go back 100 ms after a user's last request (2 s in production), so tests see settled wallets soon.
    env: {
      DATABASE_URL: databaseUrl,
      DATA_DIR: dir,
      GATEWAY_PORT: "0",
      AGENT_PORT: "0",
      ADMIN_PORT: "0",
      LOG_LEVEL: "warn",
      ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      BILLING_LEASE_IDLE_RELEASE_MS: "100",
      // No probation for the test's freshly enrolled agents (routing weight, pending earnings); a test sets it to see it.
      AGENT_PROBATION_HOURS: "0",
      // Gateways of one test database share limits in the machine's Redis under a prefix of their own
      // (a test may set REDIS_URL to "" for in-process limits).
      REDIS_URL: TEST_REDIS_URL,
      LIMITS_REDIS_PREFIX: `test:${new URL(databaseUrl).pathname.slice(1)}:`,
      // Test agents call the mock provider (--dev-upstream): only a hub in development mode admits them.
      HUB_DEVELOPMENT: "1",
      // No quality canaries (they would add provider calls a test counts); a test turns them on to see them.
      CANARY_INTERVAL_MS: "0",
      ...env,
    },
  });
  const m = await proc.waitForLine(/WELLSPRING_GATEWAY_READY api=(\S+) tunnel=wss:\/\/(\S+?)\/agent\S* pin=(\S+) hub=(\S+) admin=(\S+)/, readyTimeoutMs);
  return { ...proc, apiOrigin: m[1]!, agentOrigin: `https://${m[2]!}`, pin: m[3]!, hubId: m[4]!, adminOrigin: m[5]!, dataDir: dir };
}

export interface AgentProc extends Proc {
  dataDir: string;
  agentId: string;
}

export const DEMO_MODELS = {
  openai: ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "whisper-1", "tts-1", "gpt-image-1", "dall-e-3"],
  anthropic: ["claude-haiku-4-5", "claude-sonnet-4-5"],
};

/** Enrolls a new agent through the launcher (as an owner would) and writes its config. */
export async function enrollAgent(
  db: Db,
  gw: { agentOrigin: string; pin: string },
  ownerId: string,
  opts: { models?: typeof DEMO_MODELS; concurrentStreamsMax?: number } = {},
): Promise<{ dataDir: string; agentId: string }> {
  const { token } = await createEnrollmentToken(db, ownerId);
  return enrollWithToken(gw, token, opts);
}

/** Runs the owner's enrollment command (the launcher's `enroll`) with a token, then writes the agent's config. */
export async function enrollWithToken(
  gw: { agentOrigin: string; pin: string },
  token: string,
  opts: { models?: typeof DEMO_MODELS; concurrentStreamsMax?: number; name?: string } = {},
): Promise<{ dataDir: string; agentId: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), "ws-agent-"));
  const proc = startProc(
    AGENT_LAUNCHER,
    ["enroll", "--data", dataDir, "--hub", gw.agentOrigin, "--pin", gw.pin, "--token", token, "--name", opts.name ?? "test-agent"],
    { cwd: join(ROOT, "agent-deno") },
  );
  const m = await proc.waitForLine(/enrolled as (agt_\S+)/, 60_000);
  await proc.stop();
  const models = opts.models ?? DEMO_MODELS;
  await writeFile(
    join(dataDir, "config.json"),
    JSON.stringify({
      name: "test-agent",
      concurrentStreamsMax: opts.concurrentStreamsMax ?? 512,
      logLevel: "warn",
      // A suspended agent asks again after 0.5–1 s here (5 minutes by default), so a test sees it come back.
      suspendedRetrySeconds: 1,
      upstreams: [
        { provider: "openai", apiKeyEnv: "TEST_OPENAI_KEY", models: models.openai },
        { provider: "anthropic", apiKey: "sk-ant-test-owner-key", models: models.anthropic },
      ],
    }),
    { mode: 0o600 },
  );
  return { dataDir, agentId: m[1]! };
}

/**
 * Starts an agent as an owner does (`./wellspring-agent start`), with `--dev-upstream` when given (provider
 * calls then go to that loopback origin, e.g. the mock provider) and `--dev-resolve HOST=IP,…` for each
 * `devResolve` entry (what the endpoint check sees the provider hosts resolve to), and `--dev-no-ledger` with
 * `noLedger` (no edge ledger: benchmarks of its cost). Does not wait for it to connect.
 */
export function startAgentLauncher(
  dataDir: string,
  opts: { devUpstream?: string; devResolve?: Record<string, string[]>; env?: Record<string, string>; noLedger?: boolean } = {},
): Proc {
  const resolve = Object.entries(opts.devResolve ?? {}).flatMap(([host, addresses]) => ["--dev-resolve", `${host}=${addresses.join(",")}`]);
  const args = ["start", "--data", dataDir, ...(opts.devUpstream ? ["--dev-upstream", opts.devUpstream] : []), ...resolve];
  return startProc(AGENT_LAUNCHER, opts.noLedger ? [...args, "--dev-no-ledger"] : args, {
    cwd: join(ROOT, "agent-deno"),
    env: { TEST_OPENAI_KEY: "sk-test-owner-openai-key-123", ...opts.env },
  });
}

/** Starts an agent through the launcher with provider calls going to `upstreamOrigin`, without waiting for it to connect. */
export function launchAgent(dataDir: string, upstreamOrigin: string): Proc {
  return startAgentLauncher(dataDir, { devUpstream: upstreamOrigin });
}

export async function startAgentProc(
  dataDir: string,
  agentId: string,
  upstreamOrigin: string,
  env?: Record<string, string>,
  launch: { noLedger?: boolean } = {},
): Promise<AgentProc> {
  const proc = startAgentLauncher(dataDir, { devUpstream: upstreamOrigin, env, noLedger: launch.noLedger });
  await proc.waitForLine(/WELLSPRING_AGENT_READY/, 60_000);
  return { ...proc, dataDir, agentId };
}

/** A copy of an agent's data folder (what an owner makes by copying it to a second machine), optionally pointed at another hub origin. */
export async function copyAgentData(dataDir: string, hubUrl?: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "ws-agent-copy-"));
  // The folder may belong to a running agent: its atomic writes (`prices.json.tmp` renamed into place) and the
  // ledger's WAL files can vanish between cp's directory read and its lstat. Skip the temporaries; retry the rest.
  for (let attempt = 1; ; attempt++) {
    try {
      await cp(dataDir, dir, { recursive: true, force: true, filter: (src) => !src.endsWith(".tmp") });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= 5) throw error;
    }
  }
  if (hubUrl) {
    const identity = JSON.parse(await readFile(join(dir, "agent.json"), "utf8")) as Record<string, unknown>;
    await writeFile(join(dir, "agent.json"), JSON.stringify({ ...identity, hubUrl }));
  }
  return dir;
}

/**
 * A user's wallet once nothing is held for them any more (no request running, the gateway's lease given
 * back): what tests compare exact charges against.
 */
/** Polls `check` every 25 ms until it holds; throws after `timeoutMs`. For waiting on another process's work. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`condition not met in ${timeoutMs} ms`);
}

/** The sum of a request's journal entries on one account, µ$ (0 when there are none). */
export async function journalSum(pool: pg.Pool, account: string, requestId: string): Promise<bigint> {
  const r = await pool.query<{ s: string | null }>("SELECT SUM(amount_micros)::text AS s FROM journal_entries WHERE account = $1 AND request_id = $2", [
    account,
    requestId,
  ]);
  return BigInt(r.rows[0]!.s ?? "0");
}

export async function settledWallet(pool: pg.Pool, userId: string, timeoutMs = 5_000): Promise<{ available: bigint; reserved: bigint }> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await pool.query<{ available_micros: string; reserved_micros: string }>(
      "SELECT available_micros, reserved_micros FROM wallets WHERE user_id = $1",
      [userId],
    );
    const w = { available: BigInt(r.rows[0]?.available_micros ?? 0), reserved: BigInt(r.rows[0]?.reserved_micros ?? 0) };
    if (w.reserved === 0n || Date.now() > until) return w;
    await new Promise((res) => setTimeout(res, 25));
  }
}

/** Credits a user's wallet (an admin grant, as the ledger records it). */
export async function fund(databaseUrl: string, userId: string, micros: bigint): Promise<void> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  try {
    await new Ledger(pool).credit(userId, micros, "grant", `grant:test:${userId}:${micros}`);
  } finally {
    await pool.end();
  }
}

/** Calls the admin API of a test gateway, on its admin listener. */
export function adminFetch(adminOrigin: string, path: string, init: { method?: string; body?: unknown } = {}): Promise<Response> {
  return fetch(`${adminOrigin}${path}`, {
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, "content-type": "application/json" },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
}

export interface Stack {
  database: TestDatabase;
  db: Db;
  mock: MockProvider;
  gateway: GatewayProc;
  agent: AgentProc;
  userId: string;
  ownerId: string;
  apiKey: string;
  keyId: string;
  baseUrl: string;
  /** Waits until the gateway routes the model (the agent's inventory arrived). */
  waitForModel(model: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A stack whose hub has the default price table published before the agent connects, with a pool and a ledger on
 * its database (the billing tests' setup). `close` ends the pool, then the stack.
 */
export async function startPricedStack(
  opts: Parameters<typeof startStack>[0] = {},
): Promise<{ stack: Stack; pool: pg.Pool; ledger: Ledger; close: () => Promise<void> }> {
  const stack = await startStack({ ...opts, beforeAgent: async (db) => void (await publishPriceVersion(db, DEFAULT_PRICE_TABLE, "test seed")) });
  const pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
  return {
    stack,
    pool,
    ledger: new Ledger(pool),
    close: async () => {
      await pool.end();
      await stack.close();
    },
  };
}

/** A new user granted `micros` (none when 0), with one API key named `keyName`: the user's id and the key's secret. */
export async function fundedUser(stack: Stack, ledger: Ledger, micros: bigint, keyName: string): Promise<{ userId: string; secret: string }> {
  const userId = newId("usr");
  await stack.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  if (micros > 0n) await ledger.credit(userId, micros, "grant", `grant:${userId}`);
  return { userId, secret: (await issueKey(stack.db, userId, keyName)).secret };
}

export async function startStack(
  opts: {
    gatewayEnv?: Record<string, string>;
    /** Extra environment of the agent's launcher (which the agent inherits), e.g. DENO_V8_FLAGS for a profile. */
    agentEnv?: Record<string, string>;
    concurrentStreamsMax?: number;
    beforeAgent?: (db: Db) => Promise<void>;
    /** The database URL the gateway is given (e.g. through a proxy the test can cut); the test's own is direct. */
    gatewayDatabaseUrl?: (url: string) => string;
    /** Models the agent offers (default DEMO_MODELS). */
    models?: typeof DEMO_MODELS;
    /** The mock provider's options (e.g. its own RPM limit). */
    mockOptions?: MockOptions;
    /** false: the agent runs without its edge ledger (`--dev-no-ledger`; benchmarks of what the ledger costs). */
    agentLedger?: boolean;
    /** How long the gateway may take to print its ready line (default GATEWAY_READY_TIMEOUT_MS). */
    gatewayReadyTimeoutMs?: number;
  } = {},
): Promise<Stack> {
  const database = await createTestDatabase();
  const { db } = database;
  await opts.beforeAgent?.(db);
  const mock = await startMockProvider(opts.mockOptions);
  const gateway = await startGatewayProc(opts.gatewayDatabaseUrl?.(database.url) ?? database.url, opts.gatewayEnv, undefined, opts.gatewayReadyTimeoutMs);
  const ownerId = newId("usr");
  const userId = newId("usr");
  await db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  await db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  const key = await issueKey(db, userId, "test");
  await fund(database.url, userId, TEST_USER_FUNDING_MICROS);
  const enrolled = await enrollAgent(db, gateway, ownerId, { concurrentStreamsMax: opts.concurrentStreamsMax, models: opts.models });
  const agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin, opts.agentEnv, { noLedger: opts.agentLedger === false });
  const stack: Stack = {
    database,
    db,
    mock,
    gateway,
    agent,
    userId,
    ownerId,
    apiKey: key.secret,
    keyId: key.id,
    baseUrl: gateway.apiOrigin,
    async waitForModel(model, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const res = await fetch(`${gateway.apiOrigin}/v1/models`, { headers: { authorization: `Bearer ${key.secret}` } });
        const body = (await res.json()) as { data?: { id: string }[] };
        if (body.data?.some((m) => m.id === model)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`gateway never routed ${model}`);
    },
    async close() {
      // The current processes: a test may have restarted the agent or the gateway.
      await stack.agent.stop();
      await stack.gateway.stop();
      await mock.close();
      await database.drop();
      await rm(stack.agent.dataDir, { recursive: true, force: true });
      await rm(stack.gateway.dataDir, { recursive: true, force: true });
    },
  };
  await stack.waitForModel("gpt-4o-mini");
  return stack;
}

/** A second owner's agent on a stack, behind its own mock provider (another provider account), connected. */
export interface OwnerAgent {
  ownerId: string;
  mock: MockProvider;
  agent: AgentProc;
  agentId: string;
  stop(): Promise<void>;
}

export async function addOwnerAgent(stack: Stack): Promise<OwnerAgent> {
  const ownerId = newId("usr");
  await stack.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  const mock = await startMockProvider();
  const enrolled = await enrollAgent(stack.db, stack.gateway, ownerId);
  const agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
  await waitFor(() => stack.db.agent.findUnique({ where: { id: enrolled.agentId } }).then((a) => a?.connectedSession != null), 20_000);
  return {
    ownerId,
    mock,
    agent,
    agentId: enrolled.agentId,
    async stop() {
      await agent.stop();
      await mock.close();
    },
  };
}
