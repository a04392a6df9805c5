/**
 * Several gateway processes on one machine (GATEWAY_PROCESSES > 1 or `auto`): a primary process forks one worker per
 * slot with node:cluster, and each worker is a whole gateway — its own gateway id (`<GATEWAY_ID>-<slot>`), presence,
 * credit leases, spool file, limits slice and peer link — exactly as several gateways on several machines are
 * (peers/): an agent's tunnel lands on one worker, and a request landing on another is forwarded to it.
 *
 * - The API and agent ports are shared: the primary owns each listening socket and hands every new connection to
 *   the next worker in turn (node:cluster's round-robin; Node 20 has no `reusePort`). A keep-alive connection then
 *   stays on its worker.
 * - Each worker also listens on a peer port of its own (PEER_PORT + slot, or a free port), which it publishes as
 *   its peer URL: the other gateways' links must reach this very worker, not whichever one the shared port picks.
 * - The admin port is the primary's: `/metrics` gathers every worker's metrics (each series labelled
 *   `worker="<slot>"`) plus the primary's own; `/admin/v1/…` is proxied to the lowest live worker's private admin
 *   listener (loopback, a free port), which answers only requests carrying the primary's secret and takes the
 *   client's address from the primary's header (the wrong-token throttle stays per client).
 * - A worker that dies is forked again in its slot with the same gateway id (so it reloads its spool), at once if it
 *   had run for a while, else after a backoff doubling to 30 s. A worker that dies before the first start completed
 *   stops the whole gateway (a configuration error would otherwise loop).
 * - SIGINT / SIGTERM / SIGHUP: every worker drains as a single gateway does (gateway.close()), then the primary
 *   closes the admin port and the hub (the embedded database last).
 */
import cluster, { type Worker } from "node:cluster";
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism } from "node:os";
import { newId } from "@wellspring/db";
import { AggregatorRegistry, Counter, Gauge, Registry } from "prom-client";
import type { GatewayEnv } from "./env.ts";
import { bootHubFromEnv } from "./hub.ts";
import type { Logger } from "./log.ts";
import { METRICS_CONTENT_TYPE } from "./observability/metrics.ts";
import { ADMIN_CLIENT_ADDRESS_HEADER, ADMIN_PROXY_SECRET_HEADER } from "./server.ts";

/** The environment through which the primary tells a worker its slot and the admin proxy's secret. */
const SLOT_ENV = "WELLSPRING_GATEWAY_SLOT";
const SECRET_ENV = "WELLSPRING_ADMIN_PROXY_SECRET";
const READY_MESSAGE = "wellspring:gateway-ready";
/** A worker that ran at least this long is restarted at once; one that died sooner waits (doubling). */
const CRASH_LOOP_MS = 10_000;
const RESTART_DELAY_MS_MIN = 1_000;
const RESTART_DELAY_MS_MAX = 30_000;
/** Workers drain within the gateway's own grace; a worker still running this long after the signal is killed, ms. */
const STOP_WAIT_MS = 30_000;

/** GATEWAY_PROCESSES as a count: `auto` is one per core the process may use. */
export function gatewayProcessCount(setting: string, cores: number = availableParallelism()): number {
  return setting === "auto" ? Math.max(1, cores) : Number(setting);
}

/** The gateway id of the worker in `slot`: stable across its restarts, so it finds its own spool file again. */
export const workerGatewayId = (base: string, slot: number) => `${base}-${slot}`;

export interface WorkerContext {
  slot: number;
  adminProxySecret: string;
}

/** This process's slot and secret when it is a worker of several gateway processes; null otherwise. */
export function workerContext(): WorkerContext | null {
  if (!cluster.isWorker) return null;
  const slot = Number(process.env[SLOT_ENV]);
  const adminProxySecret = process.env[SECRET_ENV] ?? "";
  if (!Number.isInteger(slot) || slot < 0 || !adminProxySecret) throw new Error("a gateway worker must be started by the gateway's primary process");
  return { slot, adminProxySecret };
}

export interface WorkerReady {
  slot: number;
  gatewayId: string;
  apiOrigin: string;
  tunnelUrl: string;
  /** The worker's private admin listener. */
  adminOrigin: string;
}

/** A worker tells the primary it serves. */
export function announceWorkerReady(ready: WorkerReady): void {
  process.send?.({ type: READY_MESSAGE, ...ready });
}

interface Slot {
  worker: Worker | null;
  ready: WorkerReady | null;
  startedAt: number;
  restartDelayMs: number;
}

/** The primary: boots the hub, forks the workers, serves the admin port, restarts dead workers, stops them all. */
export async function runPrimary(env: GatewayEnv, processes: number, log: Logger): Promise<void> {
  if (!env.REDIS_URL) {
    throw new Error(
      `Cannot start the gateway: GATEWAY_PROCESSES=${env.GATEWAY_PROCESSES} starts ${processes} gateways, and several gateways count limits in Redis: set REDIS_URL`,
    );
  }
  const base = env.GATEWAY_ID ?? newId("gw");
  if (workerGatewayId(base, processes - 1).length > 64)
    throw new Error("Cannot start the gateway: GATEWAY_ID is too long to add a worker suffix (at most 60 characters)");
  const hub = await bootHubFromEnv(env, log);
  const secret = randomBytes(32).toString("base64url");
  const slots: Slot[] = Array.from({ length: processes }, () => ({ worker: null, ready: null, startedAt: 0, restartDelayMs: 0 }));
  let announced = false;
  let stopping = false;

  const metrics = new Registry();
  const restarts = new Counter({
    name: "wellspring_gateway_worker_restarts_total",
    help: "Gateway worker processes restarted by the primary after they died.",
    registers: [metrics],
  });
  new Gauge({
    name: "wellspring_gateway_workers",
    help: "Gateway worker processes serving (of GATEWAY_PROCESSES).",
    registers: [metrics],
    collect() {
      this.set(slots.filter((s) => s.ready).length);
    },
  });
  const aggregator = new AggregatorRegistry();

  let adminOrigin = "";
  const fork = (slot: number) => {
    const s = slots[slot]!;
    const worker = cluster.fork({
      [SLOT_ENV]: String(slot),
      [SECRET_ENV]: secret,
      GATEWAY_ID: workerGatewayId(base, slot),
      DATABASE_URL: hub.databaseUrl,
      HUB_ID: hub.hubId,
      DATA_DIR: hub.dataDir,
    });
    s.worker = worker;
    s.ready = null;
    s.startedAt = Date.now();
    worker.on("message", (m: unknown) => {
      if (!isReady(m)) return;
      s.ready = m;
      console.log(`WELLSPRING_GATEWAY_WORKER slot=${slot} pid=${worker.process.pid} gateway=${m.gatewayId}`);
      if (!announced && slots.every((x) => x.ready)) {
        announced = true;
        const first = slots[0]!.ready!;
        console.log(
          `WELLSPRING_GATEWAY_READY api=${first.apiOrigin} tunnel=${first.tunnelUrl} pin=${hub.tls.pin} hub=${hub.hubId} admin=${adminOrigin} processes=${processes}`,
        );
      }
    });
    worker.on("exit", (code, signal) => {
      if (s.worker !== worker) return;
      s.worker = null;
      s.ready = null;
      if (stopping) return;
      if (!announced) {
        log.error("gateway.worker_failed", { slot, code, signal, note: "a worker died before the gateway started: stopping" });
        void stop(1);
        return;
      }
      const ranMs = Date.now() - s.startedAt;
      s.restartDelayMs = ranMs >= CRASH_LOOP_MS ? 0 : Math.min(Math.max(s.restartDelayMs * 2, RESTART_DELAY_MS_MIN), RESTART_DELAY_MS_MAX);
      log.error("gateway.worker_exited", { slot, pid: worker.process.pid, code, signal, ranMs, restartInMs: s.restartDelayMs });
      restarts.inc();
      setTimeout(() => {
        if (!stopping) fork(slot);
      }, s.restartDelayMs).unref();
    });
  };

  const admin = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/metrics") {
      req.resume();
      void Promise.all([aggregator.clusterMetrics(), metrics.metrics()]).then(
        ([workers, own]) => res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE }).end(workers + own),
        (error: unknown) => {
          log.warn("gateway.metrics_failed", { error });
          adminError(res, 503, "Metrics could not be gathered from the gateway's workers.");
        },
      );
      return;
    }
    const target = slots.find((s) => s.ready)?.ready;
    if (!target) {
      req.resume();
      adminError(res, 503, "No gateway worker is serving; try again shortly.");
      return;
    }
    const headers = { ...req.headers, [ADMIN_PROXY_SECRET_HEADER]: secret, [ADMIN_CLIENT_ADDRESS_HEADER]: req.socket.remoteAddress ?? "unknown" };
    const upstream = http.request(`${target.adminOrigin}${req.url ?? "/"}`, { method: req.method, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", (error) => {
      log.warn("gateway.admin_proxy_failed", { slot: target.slot, error });
      if (res.headersSent) res.destroy();
      else adminError(res, 502, "The gateway worker did not answer.");
    });
    req.pipe(upstream);
  });
  const adminHost = env.ADMIN_HOST;
  await new Promise<void>((resolve, reject) => {
    admin.once("error", reject);
    admin.listen(env.ADMIN_PORT, adminHost, () => resolve());
  });
  adminOrigin = `http://${adminHost}:${(admin.address() as AddressInfo).port}`;
  log.info("gateway.primary", { processes, gatewayIdBase: base, adminOrigin, hubId: hub.hubId });
  for (let slot = 0; slot < processes; slot++) fork(slot);

  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    const live = slots.map((s) => s.worker).filter((w): w is Worker => w !== null);
    const exited = live.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once("exit", () => resolve()))));
    for (const w of live) w.process.kill("SIGTERM");
    const force = setTimeout(() => live.forEach((w) => w.isDead() || w.process.kill("SIGKILL")), STOP_WAIT_MS);
    await Promise.all(exited);
    clearTimeout(force);
    await new Promise<void>((resolve) => admin.close(() => resolve()));
    admin.closeAllConnections();
    await hub.close().catch((error: unknown) => log.warn("hub.close_failed", { error }));
    process.exit(code);
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      log.info("gateway.stopping", { signal, processes });
      void stop(0);
    });
  }
}

function isReady(m: unknown): m is WorkerReady {
  return typeof m === "object" && m !== null && (m as { type?: unknown }).type === READY_MESSAGE;
}

/** An error on the admin port, in the admin API's (OpenAI-shaped) error body. */
function adminError(res: http.ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { message, type: "server_error", param: null, code: status === 503 ? "service_unavailable" : "bad_gateway" } });
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
}
