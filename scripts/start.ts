/**
 * `npm start`: the whole hub on one machine with nothing configured — an embedded PostgreSQL when
 * DATABASE_URL is unset, in-process limits when REDIS_URL is unset (both logged), the gateway (API and agent
 * tunnel) and the portal. Builds the portal first when it has not been built or its sources changed.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { newId } from "@wellspring/db";
import { gatewayOptionsFromEnv, parseEnv } from "../gateway/src/env.ts";
import { bootHub, databaseLocation } from "../gateway/src/hub.ts";
import { createLogger } from "../gateway/src/log.ts";
import { startGateway } from "../gateway/src/server.ts";

const root = resolve(import.meta.dirname, "..");
const env = parseEnv();
const webPort = Number(process.env.WEB_PORT ?? 3000);
const log = createLogger({ proc: "hub" }, env.LOG_LEVEL);

const hub = await bootHub({ databaseUrl: env.DATABASE_URL, dataDir: env.DATA_DIR, hubId: env.HUB_ID, tlsCertFile: env.TLS_CERT_FILE, tlsKeyFile: env.TLS_KEY_FILE, log });
if (!env.REDIS_URL) log.info("hub.limits", { mode: "in-process", note: "REDIS_URL is unset: limits are kept in this process only (one gateway)" });
const gateway = await startGateway({
  ...gatewayOptionsFromEnv(env),
  db: hub.db, databaseUrl: hub.databaseUrl, log, hubId: hub.hubId, gatewayId: env.GATEWAY_ID ?? newId("gw"), tls: hub.tls, spoolDir: join(hub.dataDir, "spool"),
});

const webDir = join(root, "web");
const nextBin = join(root, "node_modules/.bin/next");
const webEnv = {
  ...process.env,
  NEXT_TELEMETRY_DISABLED: "1",
  WELLSPRING_GATEWAY_URL: gateway.apiOrigin,
  // Gateway status (metrics) is read from the admin listener.
  WELLSPRING_GATEWAY_ADMIN_URL: gateway.adminOrigin,
  DATABASE_URL: hub.databaseUrl,
  // Sessions are signed with a secret kept in DATA_DIR (made once) unless NEXTAUTH_SECRET is set.
  NEXTAUTH_SECRET: process.env.NEXTAUTH_SECRET || (await persistentSecret(join(hub.dataDir, "portal-secret"))),
  NEXTAUTH_URL: process.env.NEXTAUTH_URL || `http://${env.HOST}:${webPort}`,
};
if (portalBuildIsStale(webDir)) {
  log.info("hub.portal_build", { note: "building the portal (next build): no build yet, or sources changed since" });
  const built = spawnSync(nextBin, ["build"], { cwd: webDir, env: webEnv, stdio: "inherit" });
  if (built.status !== 0) throw new Error("Cannot start the portal: next build failed");
}
// The portal runs through web/server.ts (Next.js's handler behind a listener that resolves client addresses).
const web = spawn(join(root, "node_modules/.bin/tsx"), [join(webDir, "server.ts")], { cwd: webDir, env: { ...webEnv, HOST: env.HOST, WEB_PORT: String(webPort) }, stdio: ["ignore", "inherit", "inherit"] });

console.log([
  "",
  "Wellspring hub is running:",
  `  portal        http://${env.HOST}:${webPort}`,
  `  API           ${gateway.apiOrigin}/v1   (OpenAI- and Anthropic-compatible)`,
  `  agent tunnel  ${gateway.tunnelUrl}`,
  `  tunnel pin    ${hub.tls.pin}`,
  `  admin         ${gateway.adminOrigin}   (admin API /admin/v1/…, /metrics; keep it private)`,
  `  database      ${databaseLocation(hub.databaseUrl)}${hub.embedded ? ` (embedded, in ${hub.dataDir}/postgres)` : ""}`,
  `  hub id        ${hub.hubId}`,
  `Sign up in the portal, or make the first administrator:  npm run admin -- create-admin --email you@example.com`,
  "",
].join("\n"));

/** A random secret stored (mode 0600) in `file` the first time, read back afterwards. */
async function persistentSecret(file: string): Promise<string> {
  if (existsSync(file)) return (await readFile(file, "utf8")).trim();
  const secret = randomBytes(32).toString("base64url");
  await writeFile(file, secret + "\n", { mode: 0o600 });
  return secret;
}

/** True without a build, or when a source file the portal bundles is newer than the build. */
function portalBuildIsStale(dir: string): boolean {
  const buildId = join(dir, ".next", "BUILD_ID");
  if (!existsSync(buildId)) return true;
  const builtAt = statSync(buildId).mtimeMs;
  const newer = (path: string): boolean =>
    readdirSync(path, { withFileTypes: true }).some((e) =>
      e.isDirectory() ? !["node_modules", ".next", "generated"].includes(e.name) && newer(join(path, e.name)) : statSync(join(path, e.name)).mtimeMs > builtAt);
  return ["web/app", "web/lib", "prisma/src", "gateway/src"].some((d) => existsSync(join(root, d)) && newer(join(root, d)));
}

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  log.info("hub.stopping", { signal });
  web.kill("SIGTERM");
  void gateway.close().then(() => hub.close()).finally(() => process.exit(0));
};
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
web.on("exit", (code) => {
  if (!stopping) {
    log.error("hub.portal_exited", { code });
    stop("portal-exit");
  }
});
