/**
 * The gateway process entry: `npm run gateway` (or part of `npm start`). With GATEWAY_PROCESSES above 1 (or `auto`)
 * this process is the primary of several gateway processes and each worker runs this same entry (cluster.ts).
 */
import { newId } from "@wellspring/db";
import { announceWorkerReady, gatewayProcessCount, runPrimary, workerContext } from "./cluster.ts";
import { gatewayOptionsFromEnv, parseEnv } from "./env.ts";
import { bootHubFromEnv, hubGatewayOptions, joinHub } from "./hub.ts";
import { createLogger } from "./log.ts";
import { labelWorker } from "./observability/metrics.ts";
import { startGateway } from "./server.ts";

const env = parseEnv();
const worker = workerContext();
const log = createLogger(worker ? { proc: "gateway", worker: worker.slot } : { proc: "gateway" }, env.LOG_LEVEL);
const processes = gatewayProcessCount(env.GATEWAY_PROCESSES);
if (!worker && processes > 1) {
  await runPrimary(env, processes, log);
} else {
  if (worker) labelWorker(worker.slot);
  // A worker's primary booted the hub and passed its database, hub id and gateway id down.
  const hub = worker
    ? await joinHub({ dataDir: env.DATA_DIR, tlsCertFile: env.TLS_CERT_FILE, tlsKeyFile: env.TLS_KEY_FILE, databaseUrl: env.DATABASE_URL!, hubId: env.HUB_ID! })
    : await bootHubFromEnv(env, log);
  const gateway = await startGateway({
    ...gatewayOptionsFromEnv(env),
    ...hubGatewayOptions(hub),
    log,
    gatewayId: env.GATEWAY_ID ?? newId("gw"),
    worker: worker ? { peerPort: env.PEER_PORT ? env.PEER_PORT + worker.slot : 0, adminProxySecret: worker.adminProxySecret } : undefined,
  });
  if (worker) {
    announceWorkerReady({
      slot: worker.slot,
      gatewayId: env.GATEWAY_ID!,
      apiOrigin: gateway.apiOrigin,
      tunnelUrl: gateway.tunnelUrl,
      adminOrigin: gateway.adminOrigin,
    });
  } else {
    console.log(
      `WELLSPRING_GATEWAY_READY api=${gateway.apiOrigin} tunnel=${gateway.tunnelUrl} pin=${hub.tls.pin} hub=${hub.hubId} admin=${gateway.adminOrigin}`,
    );
  }

  let stopping = false;
  const stop = (cause: string) => {
    if (stopping) return;
    stopping = true;
    log.info("gateway.stopping", { signal: cause });
    void gateway
      .close()
      .then(() => hub.close())
      .finally(() => process.exit(0));
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => stop(signal));
  // A worker whose primary is gone (killed) drains and stops rather than serve on unowned ports.
  if (worker) process.on("disconnect", () => stop("primary_gone"));
}
