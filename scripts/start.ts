/**
 * `npm start`: the whole hub on one machine with nothing configured — an embedded PostgreSQL when
 * DATABASE_URL is unset, in-process limits when REDIS_URL is unset (both logged), the gateway (API and agent
 * tunnel) and the portal. The API answers at once; the portal is built (in a child process) when it has not been
 * built or its sources changed, and answers "being built" meanwhile (scripts/portal.ts). With no administrator
 * yet, prints a single-use link to the portal's first-run page. SIGINT, SIGTERM and SIGHUP stop the portal, the
 * gateway and the embedded database, in that order.
 */
import { rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { newId } from "@wellspring/db";
import { gatewayOptionsFromEnv, parseEnv } from "../gateway/src/env.ts";
import { bootHubFromEnv, databaseLocation, hubGatewayOptions } from "../gateway/src/hub.ts";
import { createLogger } from "../gateway/src/log.ts";
import { startGateway } from "../gateway/src/server.ts";
import { issueSetupToken } from "../gateway/src/ops/administrators.ts";
import { portalEnv, startPortal } from "./portal.ts";

/** The file (in DATA_DIR, mode 0600) holding the first-run link while no administrator exists. */
const ADMIN_SETUP_URL_FILE = "admin-setup-url";

const root = resolve(import.meta.dirname, "..");
const env = parseEnv();
const webPort = Number(process.env.WEB_PORT ?? 3000);
const log = createLogger({ proc: "hub" }, env.LOG_LEVEL);
if (env.GATEWAY_PROCESSES !== "1") {
  log.warn("hub.gateway_processes_ignored", {
    note: 'npm start runs one gateway process: GATEWAY_PROCESSES applies to `npm run gateway` (docs/operations/gateway.md, "Several processes on one machine")',
  });
}

const hub = await bootHubFromEnv(env, log);
const gateway = await startGateway({
  ...gatewayOptionsFromEnv(env),
  ...hubGatewayOptions(hub),
  log,
  gatewayId: env.GATEWAY_ID ?? newId("gw"),
});

const webEnv = await portalEnv({
  dataDir: hub.dataDir,
  databaseUrl: hub.databaseUrl,
  apiOrigin: gateway.apiOrigin,
  adminOrigin: gateway.adminOrigin,
  host: env.HOST,
  port: webPort,
});
// The API serves from here on; the portal builds (when it must) in a child process and follows.
const portal = startPortal({ root, host: env.HOST, port: webPort, env: webEnv, log, output: "inherit" });
const setup = await adminSetupLink(webEnv.NEXTAUTH_URL);

console.log(
  [
    "",
    "Wellspring hub is running:",
    `  API           ${gateway.apiOrigin}/v1   (OpenAI- and Anthropic-compatible; answering now)`,
    `  portal        ${portal.origin}${portal.building ? "   (being built: about a minute; the page says so until it is ready)" : ""}`,
    `  agent tunnel  ${gateway.tunnelUrl}`,
    `  tunnel pin    ${hub.tls.pin}`,
    `  admin         ${gateway.adminOrigin}   (admin API /admin/v1/…, /metrics; keep it private)`,
    `  database      ${databaseLocation(hub.databaseUrl)}${hub.embedded ? ` (embedded, in ${hub.dataDir}/postgres)` : ""}`,
    `  hub id        ${hub.hubId}`,
    ...(setup
      ? [
          "No administrator yet. Make the first one in the portal with this single-use link (valid 24 hours, also in",
          `${setup.file}):`,
          `  ${setup.url}`,
          "or from a terminal:  npm run admin -- create-admin --email you@example.com",
        ]
      : []),
    "",
  ].join("\n"),
);
portal.ready.then(
  () => log.info("hub.portal_ready", { url: portal.origin }),
  (error: unknown) => {
    log.error("hub.portal_failed", { error });
    stop("portal-failed");
  },
);

/**
 * While no administrator exists: a new single-use setup link for the portal's first-run page, also written to
 * DATA_DIR/admin-setup-url (mode 0600) for operators who do not see the log. Once one exists the file goes.
 */
async function adminSetupLink(portalUrl: string): Promise<{ url: string; file: string } | null> {
  const file = join(hub.dataDir, ADMIN_SETUP_URL_FILE);
  const issued = await issueSetupToken(hub.db);
  if (!issued) {
    await rm(file, { force: true });
    return null;
  }
  const url = `${portalUrl.replace(/\/$/, "")}/setup?token=${issued.token}`;
  await writeFile(file, url + "\n", { mode: 0o600 });
  return { url, file };
}

let stopping = false;
function stop(reason: string): void {
  if (stopping) return;
  stopping = true;
  log.info("hub.stopping", { reason });
  // The portal first (it writes through the hub's database), then the gateway (leases released, spool flushed),
  // then the database.
  void portal
    .stop()
    .then(() => gateway.close())
    .then(() => hub.close())
    .then(
      () => process.exit(0),
      (error: unknown) => {
        log.error("hub.stop_failed", { error });
        process.exit(1);
      },
    );
}
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => stop(signal));
portal.onExit((code) => {
  log.error("hub.portal_exited", { code });
  stop("portal-exit");
});
