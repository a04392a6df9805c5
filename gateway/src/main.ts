/** The gateway process entry: `npm run gateway` (or part of `npm start`). */
import { join } from "node:path";
import { newId } from "@wellspring/db";
import { gatewayOptionsFromEnv, parseEnv } from "./env.ts";
import { bootHub } from "./hub.ts";
import { createLogger } from "./log.ts";
import { startGateway } from "./server.ts";

const env = parseEnv();
const log = createLogger({ proc: "gateway" }, env.LOG_LEVEL);
const hub = await bootHub({
  databaseUrl: env.DATABASE_URL,
  dataDir: env.DATA_DIR,
  hubId: env.HUB_ID,
  tlsCertFile: env.TLS_CERT_FILE,
  tlsKeyFile: env.TLS_KEY_FILE,
  log,
});
const gateway = await startGateway({
  ...gatewayOptionsFromEnv(env),
  db: hub.db,
  databaseUrl: hub.databaseUrl,
  log,
  hubId: hub.hubId,
  gatewayId: env.GATEWAY_ID ?? newId("gw"),
  tls: hub.tls,
  spoolDir: join(hub.dataDir, "spool"),
});
console.log(`WELLSPRING_GATEWAY_READY api=${gateway.apiOrigin} tunnel=${gateway.tunnelUrl} pin=${hub.tls.pin} hub=${hub.hubId} admin=${gateway.adminOrigin}`);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info("gateway.stopping", { signal });
    void gateway
      .close()
      .then(() => hub.close())
      .finally(() => process.exit(0));
  });
}
