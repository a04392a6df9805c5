/**
 * `npm start`: the whole hub on one machine with nothing configured — an embedded PostgreSQL when
 * DATABASE_URL is unset, in-process limits when REDIS_URL is unset (both logged), the gateway (API and agent
 * tunnel) and the portal. Builds the portal first if it has not been built.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { newId } from "@wellspring/db";
import { billingFromEnv, parseEnv } from "../gateway/src/env.ts";
import { bootHub } from "../gateway/src/hub.ts";
import { createLogger } from "../gateway/src/log.ts";
import { startGateway } from "../gateway/src/server.ts";

const root = resolve(import.meta.dirname, "..");
const env = parseEnv();
const webPort = Number(process.env.WEB_PORT ?? 3000);
const log = createLogger({ proc: "hub" }, env.LOG_LEVEL);

const hub = await bootHub({ databaseUrl: env.DATABASE_URL, dataDir: env.DATA_DIR, hubId: env.HUB_ID, tlsCertFile: env.TLS_CERT_FILE, tlsKeyFile: env.TLS_KEY_FILE, log });
if (!env.REDIS_URL) log.info("hub.limits", { mode: "in-process", note: "REDIS_URL is unset: limits are kept in this process only (one gateway)" });
const gateway = await startGateway({
  db: hub.db, databaseUrl: hub.databaseUrl, log, hubId: hub.hubId, gatewayId: env.GATEWAY_ID ?? newId("gw"), tls: hub.tls,
  host: env.HOST, apiPort: env.GATEWAY_PORT, agentPort: env.AGENT_PORT,
  limits: { requestBodyBytesMax: env.REQUEST_BODY_BYTES_MAX, responseHeadTimeoutMs: env.RESPONSE_HEAD_TIMEOUT_MS, streamIdleTimeoutMs: env.STREAM_IDLE_TIMEOUT_MS },
  tunnel: { heartbeatIntervalMs: env.TUNNEL_HEARTBEAT_INTERVAL_MS, heartbeatTimeoutMs: env.TUNNEL_HEARTBEAT_TIMEOUT_MS },
  billing: billingFromEnv(env),
  adminToken: env.ADMIN_TOKEN,
});

const webDir = join(root, "web");
const nextBin = join(root, "node_modules/.bin/next");
const webEnv = { ...process.env, NEXT_TELEMETRY_DISABLED: "1", WELLSPRING_GATEWAY_URL: gateway.apiOrigin, DATABASE_URL: hub.databaseUrl };
if (!existsSync(join(webDir, ".next", "BUILD_ID"))) {
  log.info("hub.portal_build", { note: "building the portal once (next build)" });
  const built = spawnSync(nextBin, ["build"], { cwd: webDir, env: webEnv, stdio: "inherit" });
  if (built.status !== 0) throw new Error("Cannot start the portal: next build failed");
}
const web = spawn(nextBin, ["start", "-H", env.HOST, "-p", String(webPort)], { cwd: webDir, env: webEnv, stdio: ["ignore", "inherit", "inherit"] });

console.log([
  "",
  "Wellspring hub is running:",
  `  portal        http://${env.HOST}:${webPort}`,
  `  API           ${gateway.apiOrigin}/v1   (OpenAI- and Anthropic-compatible)`,
  `  agent tunnel  ${gateway.tunnelUrl}`,
  `  tunnel pin    ${hub.tls.pin}`,
  `  hub id        ${hub.hubId}`,
  "Create a user and key:  npm run admin -- create-user --email you@example.com && npm run admin -- create-key --email you@example.com",
  "",
].join("\n"));

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
