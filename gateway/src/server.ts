/**
 * The gateway process: the public API (OpenAI- and Anthropic-compatible) on one listener and the agent
 * tunnel (TLS, WebSocket) on another, so each can be exposed and firewalled on its own.
 */
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { WebSocketServer } from "ws";
import { FRAME_BYTES_MAX, type ApiFamily } from "@wellspring/protocol";
import type { Db } from "@wellspring/db";
import { GatewayError, sendError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { KeyVerifier } from "./api/keys.ts";
import { authenticate, DEFAULT_PROXY_LIMITS, proxyRequest, type ProxyLimits } from "./api/proxy.ts";
import { RecordWriter } from "./api/records.ts";
import { Ledger } from "./billing/ledger.ts";
import { PriceBook } from "./billing/price_book.ts";
import { familyOfPath, findRoute } from "./api/routes.ts";
import { AgentConnection, DEFAULT_TUNNEL_SETTINGS, type TunnelSettings } from "./tunnel/agent_connection.ts";
import { handleEnroll } from "./tunnel/enroll.ts";
import { AgentRegistry } from "./tunnel/registry.ts";
import type { TlsIdentity } from "./tls.ts";

export const TUNNEL_PATH = "/agent/v1/tunnel";
export const ENROLL_PATH = "/agent/v1/enroll";
/** On shutdown, requests in flight get this long to finish before their connections are closed. */
const SHUTDOWN_GRACE_MS = 5_000;
/** How long the known-models list (for 404 vs 503) is cached, ms. */
const KNOWN_MODELS_TTL_MS = 10_000;

export interface GatewayOptions {
  db: Db;
  /** The same database, for the record writer's batched inserts. */
  databaseUrl: string;
  log: Logger;
  hubId: string;
  gatewayId: string;
  tls: TlsIdentity;
  host?: string;
  apiPort?: number;
  agentPort?: number;
  limits?: Partial<ProxyLimits>;
  /** Reserve-then-settle billing against the official price table; off when unset. */
  billing?: { planBps: bigint; discountTierBps: bigint; defaultMaxOutputTokens: number } | null;
  tunnel?: Partial<Omit<TunnelSettings, "hubId">>;
}

export interface Gateway {
  apiOrigin: string;
  agentOrigin: string;
  tunnelUrl: string;
  registry: AgentRegistry;
  records: RecordWriter;
  close(): Promise<void>;
}

function listen(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { db, log } = opts;
  const host = opts.host ?? "127.0.0.1";
  const limits: ProxyLimits = { ...DEFAULT_PROXY_LIMITS, ...opts.limits };
  const tunnelSettings: TunnelSettings = { ...DEFAULT_TUNNEL_SETTINGS, ...opts.tunnel, hubId: opts.hubId };
  const registry = new AgentRegistry();
  const keys = new KeyVerifier(db);
  const recordsPool = new pg.Pool({ connectionString: opts.databaseUrl, max: 8 });
  recordsPool.on("error", (error) => log.warn("records.pool_error", { error }));
  const records = new RecordWriter(recordsPool, log);
  let knownCache: { at: number; models: Map<ApiFamily, Set<string>> } | null = null;
  const knownModels = async (api: ApiFamily): Promise<ReadonlySet<string>> => {
    if (!knownCache || Date.now() - knownCache.at > KNOWN_MODELS_TTL_MS) {
      const rows = await db.agent.findMany({ where: { status: { in: ["active", "paused"] } }, select: { models: true } });
      const models = new Map<ApiFamily, Set<string>>([["openai", new Set()], ["anthropic", new Set()]]);
      for (const r of rows) {
        for (const pm of r.models) {
          const [provider, ...rest] = pm.split(":");
          models.get(provider === "anthropic" ? "anthropic" : "openai")!.add(rest.join(":"));
        }
      }
      knownCache = { at: Date.now(), models };
    }
    return knownCache.models.get(api)!;
  };
  const billing = opts.billing
    ? { ...opts.billing, ledger: new Ledger(recordsPool), prices: new PriceBook(db) }
    : null;
  if (billing) log.info("gateway.billing", { mode: "on", planBps: String(billing.planBps) });
  const deps = { registry, keys, records, gatewayId: opts.gatewayId, limits, log, knownModels, billing };

  const api = http.createServer((req, res) => {
    void handleApi(req, res).catch((error: unknown) => {
      log.error("api.unhandled", { error });
      if (!res.headersSent) sendError(res, familyOfPath(req.url ?? "/"), new GatewayError("internal_error", "Internal error."));
      else res.destroy();
    });
  });
  api.keepAliveTimeout = 65_000;
  api.headersTimeout = 66_000;
  api.requestTimeout = 0; // long generations are bounded by the proxy's own timeouts

  async function handleApi(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://gateway");
    const path = url.pathname;
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ok: true }));
      return;
    }
    if (path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(metricsText(registry, records));
      return;
    }
    const family = familyOfPath(path);
    if (path === "/v1/models" && req.method === "GET") {
      try {
        await authenticate(req, keys);
      } catch (error) {
        sendError(res, family, error as GatewayError);
        return;
      }
      const anthropic = typeof req.headers["anthropic-version"] === "string";
      const models = registry.models(anthropic ? "anthropic" : "openai");
      const body = anthropic
        ? { data: models.map((id) => ({ type: "model", id, display_name: id, created_at: "2025-01-01T00:00:00Z" })), has_more: false, first_id: models[0] ?? null, last_id: models.at(-1) ?? null }
        : { object: "list", data: models.map((id) => ({ id, object: "model", created: 0, owned_by: "wellspring" })) };
      const text = JSON.stringify(body);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
      return;
    }
    const route = findRoute(path);
    if (!route) {
      sendError(res, family, new GatewayError("route_not_found", `Unknown request URL: ${req.method} ${path}.`));
      req.resume();
      return;
    }
    if (req.method !== "POST") {
      sendError(res, route.api, new GatewayError("method_not_allowed", `${req.method} is not allowed on ${route.path}; use POST.`));
      req.resume();
      return;
    }
    await proxyRequest(req, res, route, deps);
  }

  // --- agent listener: TLS only ---
  const agentServer = https.createServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: "TLSv1.2" }, (req, res) => {
    const path = new URL(req.url ?? "/", "https://hub").pathname;
    if (path === ENROLL_PATH && req.method === "POST") {
      void handleEnroll(req, res, db, opts.hubId).catch((error: unknown) => {
        log.error("enroll.failed", { error });
        if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" }).end('{"error":{"code":"internal_error","message":"Internal error."}}');
      });
      return;
    }
    if (path === "/agent/v1/healthz") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ok: true, hubId: opts.hubId }));
      return;
    }
    res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"code":"not_found","message":"Unknown path."}}');
  });
  // Small frames must leave at once: Nagle plus delayed ACKs would add ~40 ms to small exchanges.
  agentServer.on("connection", (socket: import("node:net").Socket) => socket.setNoDelay(true));
  const wss = new WebSocketServer({ noServer: true, maxPayload: FRAME_BYTES_MAX, perMessageDeflate: false });
  agentServer.on("upgrade", (req, socket, head) => {
    const path = new URL(req.url ?? "/", "https://hub").pathname;
    if (path !== TUNNEL_PATH) {
      // A rejected upgrade gets a real HTTP status before the socket closes.
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      (socket as import("node:net").Socket).setNoDelay(true);
      new AgentConnection(ws, req, db, tunnelSettings, {
        ready: (conn) => {
          knownCache = null;
          registry.add(conn);
        },
        inventory: (conn) => {
          knownCache = null;
          registry.reindex(conn);
        },
        closed: (conn) => registry.remove(conn),
      }, log);
    });
  });

  const apiPort = await listen(api, opts.apiPort ?? 0, host);
  const agentPort = await listen(agentServer, opts.agentPort ?? 0, host);
  const apiOrigin = `http://${host}:${apiPort}`;
  const agentOrigin = `https://${host}:${agentPort}`;
  log.info("gateway.listening", { apiOrigin, agentOrigin, hubId: opts.hubId, gatewayId: opts.gatewayId, tunnelPin: opts.tls.pin });

  return {
    apiOrigin,
    agentOrigin,
    tunnelUrl: `wss://${host}:${agentPort}${TUNNEL_PATH}`,
    registry,
    records,
    async close() {
      for (const conn of registry.connections()) conn.goAway();
      // Stop accepting; idle keep-alive connections go now, requests in flight get a grace period.
      const apiClosed = new Promise<void>((resolve) => api.close(() => resolve()));
      api.closeIdleConnections();
      const grace = setTimeout(() => api.closeAllConnections(), SHUTDOWN_GRACE_MS);
      await apiClosed;
      clearTimeout(grace);
      for (const client of wss.clients) client.terminate();
      const agentClosed = new Promise<void>((resolve) => agentServer.close(() => resolve()));
      agentServer.closeAllConnections();
      await agentClosed;
      await records.flush();
      await recordsPool.end();
    },
  };
}

function metricsText(registry: AgentRegistry, records: RecordWriter): string {
  const conns = registry.connections();
  const lines = [
    "# HELP wellspring_agents_connected Agents with an authenticated tunnel to this gateway.",
    "# TYPE wellspring_agents_connected gauge",
    `wellspring_agents_connected ${conns.length}`,
    "# HELP wellspring_streams_open Streams open across all tunnels.",
    "# TYPE wellspring_streams_open gauge",
    `wellspring_streams_open ${conns.reduce((n, c) => n + c.inFlight, 0)}`,
    "# HELP wellspring_tunnel_held_response_bytes Response bytes received from agents and not yet taken by clients.",
    "# TYPE wellspring_tunnel_held_response_bytes gauge",
    `wellspring_tunnel_held_response_bytes ${conns.reduce((n, c) => n + c.heldResponseBytes, 0)}`,
    "# HELP wellspring_tunnel_buffered_bytes Bytes queued on tunnel sockets.",
    "# TYPE wellspring_tunnel_buffered_bytes gauge",
    `wellspring_tunnel_buffered_bytes ${conns.reduce((n, c) => n + c.bufferedBytes, 0)}`,
    "# HELP wellspring_records_dropped_total Request records dropped because the write queue was full.",
    "# TYPE wellspring_records_dropped_total counter",
    `wellspring_records_dropped_total ${records.dropped}`,
    "# HELP process_resident_memory_bytes Resident memory size in bytes.",
    "# TYPE process_resident_memory_bytes gauge",
    `process_resident_memory_bytes ${process.memoryUsage.rss()}`,
  ];
  return lines.join("\n") + "\n";
}
