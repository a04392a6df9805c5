/**
 * The portal beside a hub process (`npm start`, `npm run demo`). The API is served at once: when the portal has
 * no build, or a source it bundles changed, `next build` runs as a child process (so the hub's event loop keeps
 * answering API calls) while a placeholder page on the portal's port says it is being built; then the portal runs
 * through web/server.ts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Logger } from "../gateway/src/log.ts";

/** Lines of a failed build's output kept to explain it. */
const BUILD_OUTPUT_TAIL_LINES = 40;
/** How long the placeholder page asks a browser to wait before it reloads, seconds. */
const BUILDING_RETRY_SECONDS = 5;

export interface PortalOptions {
  root: string;
  host: string;
  port: number;
  /** The portal's environment (database, secrets, gateway URLs). */
  env: NodeJS.ProcessEnv;
  log: Logger;
  /** Show `next build` and the portal's output on this process's stdout/stderr (npm start), or only on failure (demo). */
  output: "inherit" | "quiet";
}

export interface Portal {
  origin: string;
  /** Whether this start builds the portal first. */
  building: boolean;
  /** Resolves when the portal answers pages; rejects when the build or the portal fails first. */
  ready: Promise<void>;
  /** Called once if the portal stops by itself (not through stop()). */
  onExit(listener: (code: number | null) => void): void;
  stop(): Promise<void>;
}

/**
 * The portal's environment beside a hub: its database, the gateway's API and admin origins, and a session secret
 * kept in DATA_DIR (made once, mode 0600) unless NEXTAUTH_SECRET is set.
 */
export async function portalEnv(o: {
  dataDir: string;
  databaseUrl: string;
  apiOrigin: string;
  adminOrigin: string;
  host: string;
  port: number;
}): Promise<NodeJS.ProcessEnv & { NEXTAUTH_URL: string }> {
  return {
    ...process.env,
    NEXT_TELEMETRY_DISABLED: "1",
    WELLSPRING_GATEWAY_URL: o.apiOrigin,
    // Gateway status (metrics) is read from the admin listener.
    WELLSPRING_GATEWAY_ADMIN_URL: o.adminOrigin,
    DATABASE_URL: o.databaseUrl,
    NEXTAUTH_SECRET: process.env.NEXTAUTH_SECRET || (await persistentSecret(join(o.dataDir, "portal-secret"))),
    NEXTAUTH_URL: process.env.NEXTAUTH_URL || `http://${o.host}:${o.port}`,
  };
}

/** A random secret stored (mode 0600) in `file` the first time, read back afterwards. */
async function persistentSecret(file: string): Promise<string> {
  if (existsSync(file)) return (await readFile(file, "utf8")).trim();
  const secret = randomBytes(32).toString("base64url");
  await writeFile(file, secret + "\n", { mode: 0o600 });
  return secret;
}

/** True without a build, or when a source file the portal bundles (or its build configuration) is newer than the build. */
export function portalBuildIsStale(root: string): boolean {
  const buildId = join(root, "web", ".next", "BUILD_ID");
  if (!existsSync(buildId)) return true;
  const builtAt = statSync(buildId).mtimeMs;
  const newer = (path: string): boolean =>
    readdirSync(path, { withFileTypes: true }).some((e) =>
      e.isDirectory() ? !["node_modules", ".next", "generated"].includes(e.name) && newer(join(path, e.name)) : statSync(join(path, e.name)).mtimeMs > builtAt,
    );
  const changed = (file: string) => existsSync(join(root, file)) && statSync(join(root, file)).mtimeMs > builtAt;
  return (
    ["web/app", "web/lib", "web/public", "prisma/src", "gateway/src"].some((d) => existsSync(join(root, d)) && newer(join(root, d))) ||
    ["web/next.config.ts", "web/postcss.config.mjs", "web/tsconfig.json", "package-lock.json"].some(changed)
  );
}

const BUILDING_PAGE = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="${BUILDING_RETRY_SECONDS}"><title>Starting — Wellspring</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1.5rem;color:#0f172a">
<h1 style="font-size:1.25rem">The portal is being built</h1>
<p>This hub was just installed or updated, so its portal is being built (about a minute). The API already answers.
This page reloads itself.</p></body></html>`;

/** Answers every request with the "being built" page (503, Retry-After) until the portal takes the port over. */
async function startPlaceholder(host: string, port: number): Promise<Server> {
  const server = createServer((_req, res) => {
    res.writeHead(503, { "content-type": "text/html; charset=utf-8", "retry-after": String(BUILDING_RETRY_SECONDS), "cache-control": "no-store" });
    res.end(BUILDING_PAGE);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

function watchOutput(child: ChildProcess, output: PortalOptions["output"], tail: string[], onLine?: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on("line", (line) => {
      tail.push(line);
      if (tail.length > BUILD_OUTPUT_TAIL_LINES) tail.shift();
      if (output === "inherit") (stream === child.stderr ? process.stderr : process.stdout).write(line + "\n");
      onLine?.(line);
    });
  }
}

export function startPortal(o: PortalOptions): Portal {
  const building = portalBuildIsStale(o.root);
  const webDir = join(o.root, "web");
  let placeholder: Server | null = null;
  let child: ChildProcess | null = null;
  let stopping = false;
  const exitListeners: ((code: number | null) => void)[] = [];

  const build = async (): Promise<void> => {
    placeholder = await startPlaceholder(o.host, o.port);
    o.log.info("hub.portal_build", {
      note: `building the portal (next build) in a child process: no build yet, or sources changed since. The API answers meanwhile; the portal's address shows a "being built" page until it is done`,
    });
    const tail: string[] = [];
    child = spawn(join(o.root, "node_modules/.bin/next"), ["build"], { cwd: webDir, env: o.env, stdio: ["ignore", "pipe", "pipe"] });
    watchOutput(child, o.output, tail);
    const code = await new Promise<number | null>((resolve) => child!.once("exit", (c) => resolve(c)));
    child = null;
    await new Promise<void>((resolve) => placeholder!.close(() => resolve()));
    placeholder = null;
    if (stopping) return;
    if (code !== 0) throw new Error(`Cannot start the portal: next build failed (exit ${code}):\n${tail.join("\n")}`);
  };

  const serve = async (): Promise<void> => {
    const tail: string[] = [];
    // web/server.ts: Next.js's handler behind a listener that resolves client addresses.
    const web = spawn(join(o.root, "node_modules/.bin/tsx"), [join(webDir, "server.ts")], {
      cwd: webDir,
      env: { ...o.env, HOST: o.host, WEB_PORT: String(o.port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = web;
    await new Promise<void>((resolve, reject) => {
      watchOutput(web, o.output, tail, (line) => {
        if (line.startsWith("portal ready")) resolve();
      });
      web.once("exit", (code) => {
        child = null;
        reject(new Error(`The portal exited (${code}) before it was ready:\n${tail.join("\n")}`));
        if (!stopping) for (const l of exitListeners) l(code);
      });
    });
  };

  const ready = (async () => {
    if (building) await build();
    if (!stopping) await serve();
  })();
  ready.catch(() => undefined); // the caller decides what a failure means; no unhandled rejection meanwhile

  return {
    origin: `http://${o.host}:${o.port}`,
    building,
    ready,
    onExit: (listener) => void exitListeners.push(listener),
    async stop() {
      stopping = true;
      const running = child;
      if (running && running.exitCode === null && running.signalCode === null) {
        const exited = new Promise((resolve) => running.once("exit", resolve));
        running.kill("SIGTERM");
        await exited;
      }
      const p = placeholder;
      if (p) await new Promise<void>((resolve) => p.close(() => resolve()));
    },
  };
}
