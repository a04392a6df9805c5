/** The gateway process entry: `npm run gateway` (or part of `npm start`). */
import { join } from "node:path";
import { newId } from "@wellspring/db";
import { billingFromEnv, parseEnv } from "./env.ts";
import { bootHub } from "./hub.ts";
import { createLogger } from "./log.ts";
import { startGateway } from "./server.ts";

const env = parseEnv();
const log = createLogger({ proc: "gateway" }, env.LOG_LEVEL);
const hub = await bootHub({ databaseUrl: env.DATABASE_URL, dataDir: env.DATA_DIR, hubId: env.HUB_ID, tlsCertFile: env.TLS_CERT_FILE, tlsKeyFile: env.TLS_KEY_FILE, log });
if (!env.REDIS_URL) log.info("gateway.limits", { mode: "in-process", note: "REDIS_URL is unset: limits are kept in this process only" });
const gateway = await startGateway({
  db: hub.db, databaseUrl: hub.databaseUrl,
  log,
  hubId: hub.hubId,
  gatewayId: env.GATEWAY_ID ?? newId("gw"),
  tls: hub.tls, spoolDir: join(hub.dataDir, "spool"),
  host: env.HOST,
  apiPort: env.GATEWAY_PORT,
  agentPort: env.AGENT_PORT,
  limits: {
    requestBodyBytesMax: env.REQUEST_BODY_BYTES_MAX,
    responseHeadTimeoutMs: env.RESPONSE_HEAD_TIMEOUT_MS,
    streamIdleTimeoutMs: env.STREAM_IDLE_TIMEOUT_MS,
  },
  billing: billingFromEnv(env),
  adminToken: env.ADMIN_TOKEN,
  tunnel: { heartbeatIntervalMs: env.TUNNEL_HEARTBEAT_INTERVAL_MS, heartbeatTimeoutMs: env.TUNNEL_HEARTBEAT_TIMEOUT_MS, presenceProbeTimeoutMs: env.TUNNEL_PRESENCE_PROBE_TIMEOUT_MS },
});
console.log(`WELLSPRING_GATEWAY_READY api=${gateway.apiOrigin} tunnel=${gateway.tunnelUrl} pin=${hub.tls.pin} hub=${hub.hubId}`);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info("gateway.stopping", { signal });
    void gateway.close().then(() => hub.close()).finally(() => process.exit(0));
  });
}
