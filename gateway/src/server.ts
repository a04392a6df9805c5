/**
 * The gateway process: the public API (OpenAI- and Anthropic-compatible) on one listener, the agent tunnel
 * (TLS, WebSocket) on another, and the operator's admin API and metrics on a third (loopback by default),
 * so each can be exposed and firewalled on its own.
 */
import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { WebSocketServer } from "ws";
import { EGRESS_ECHO_PATH, FRAME_BYTES_MAX, toBase64Url, type ApiFamily } from "@wellspring/protocol";
import { dirname, join } from "node:path";
import { publishHubEndpoint, type Db } from "@wellspring/db/core";
import { GatewayError, sendError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { knownModelsByFamily } from "./ops/models.ts";
import { KEY_FILTER_MISS_LOOKUPS_PER_S_DEFAULT, KeyVerifier } from "./api/keys.ts";
import { activeKeyPrefixes, KEY_FILTER_REBUILD_INTERVAL_MS_DEFAULT, KeyFilter, KeyFilterLoader } from "./api/key_filter.ts";
import { FailureThrottle, type FailureThrottleOptions } from "./api/failure_throttle.ts";
import { DEFAULT_PROXY_LIMITS, proxyRequest, type ProxyLimits } from "./api/proxy.ts";
import { json, Router, withAdmin, withPrincipal } from "./api/router.ts";
import { FreeRouteLimiter, freeRouteLimited } from "./api/free_routes.ts";
import { RECORD_CODEC, RecordWriter, type RequestRecordInput } from "./api/records.ts";
import { Ledger } from "./billing/ledger.ts";
import { LedgerHealth } from "./billing/health.ts";
import { PriceBook, priceTableMessage, Tariffs } from "./billing/prices.ts";
import { Meter } from "./billing/meter.ts";
import { DeferredSettlements } from "./api/deferred.ts";
import { batchListQuery, listBatches } from "./api/openai_batches.ts";
import type { DeferredOptions } from "./billing/deferred.ts";
import { CanaryPayments } from "./billing/canary_pay.ts";
import { recordUsageDivergence } from "./risk/usage_divergence.ts";
import { LinkedAccounts, viaPrisma } from "./risk/account_links.ts";
import { SelfDealingDetector, type LinkedEarningsMode } from "./risk/linked_accounts.ts";
import { ENDPOINT_FORBIDDEN, EndpointReportThrottle, raiseEndpointForbidden } from "./risk/endpoint_forbidden.ts";
import { EGRESS_PRUNE_INTERVAL_MS, EgressProbes, plainAddress } from "./risk/egress.ts";
import { CanaryScheduler, type CanaryOptions } from "./risk/canary.ts";
import { checkKeyReuse, KEY_FINGERPRINT_REUSE } from "./risk/key_reuse.ts";
import { ContentRules } from "./risk/content_screen.ts";
import { Treasury } from "./ops/treasury.ts";
import { SETTLEMENT_CODEC, SettlementBatcher, type SpooledSettlement } from "./billing/settlement_batcher.ts";
import { CreditLeases, DEFAULT_LEASE_OPTIONS, type LeaseOptions } from "./billing/leases.ts";
import { Spool } from "./billing/spool.ts";
import { handleBillingSubscription, handleBillingUsage, handleModels, handleRedeem } from "./api/account.ts";
import { ADMIN_AUTH_DEFAULTS, adminTokenHash, authorizeAdmin, handleAdmin } from "./api/admin.ts";
import { hubEventHandler, HubEventListener } from "./hub_events.ts";
import {
  BATCH_CREATE_ROUTE,
  familyOfPath,
  FILE_UPLOAD_ROUTE,
  findRoute,
  findStoredObjectCall,
  isAnthropicFilesCall,
  isAssistantsPath,
  MESSAGE_BATCH_CREATE_ROUTE,
} from "./api/routes.ts";
import { MessageBatchRoutes, messageBatchListQuery } from "./routing/message_batches.ts";
import { AgentConnection, DEFAULT_TUNNEL_SETTINGS, type TunnelSettings } from "./tunnel/agent_connection.ts";
import { handleEnroll } from "./tunnel/enroll.ts";
import { AgentRegistry } from "./tunnel/registry.ts";
import { BreakerSnapshot, FileRoutes, fileListQuery, Routing, StickyRoutes, type RoutingOptions } from "./routing/mod.ts";
import { PEER_PATH, Peers } from "./peers/mod.ts";
import { AgentDirectory } from "./tunnel/agent_directory.ts";
import { loadHubReceiptKey } from "./ledger/hub_key.ts";
import { HubRecordSealer, loadRebuildKey, REBUILD_KEY_FILE } from "./ledger/hub_record.ts";
import { EdgeReceipts, type ReofferCursor } from "./ledger/receipts.ts";
import { IdentityGuard } from "./tunnel/identity_guard.ts";
import { AgentReleases, RELEASES_PATH } from "./tunnel/releases.ts";
import type { TlsIdentity } from "./tls.ts";
import { attachGateway, metricsText, METRICS_CONTENT_TYPE, observeLimiter } from "./observability/metrics.ts";
import { ArchiveJob } from "./archive/job.ts";
import {
  Limiter,
  LIMITS_REDIS_RETRY_MS_DEFAULT,
  LIMITS_SLICE_FRACTION_DEFAULT,
  LIMITS_SLICE_IDLE_MS_DEFAULT,
  USER_CONCURRENCY_MAX_DEFAULT,
} from "./limits/limiter.ts";
import { SLOT_HOLD_MS_DEFAULT } from "./limits/store.ts";
import { RedisStore } from "./limits/redis_store.ts";
import { connectRedis, REDIS_COMMAND_TIMEOUT_MS_DEFAULT, redisAnswers, whenRedisReady } from "./limits/redis.ts";
import {
  gatewaysLastSeen,
  keyChargedSinceMicros,
  LIMITS_STATUS_INTERVAL_MS,
  liveGatewayCount,
  otherLiveGateways,
  reportLimitsDegraded,
} from "./limits/ledger_reads.ts";
import type { ArchiveConfig } from "./archive/config.ts";

export const TUNNEL_PATH = "/agent/v1/tunnel";
export const ENROLL_PATH = "/agent/v1/enroll";
/** Idle keep-alive connections of API clients are closed after this long (above common load balancers' 60 s), ms. */
const API_KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** A request's headers must arrive within this long (just above the keep-alive timeout, as Node requires), ms. */
const API_HEADERS_TIMEOUT_MS = 66_000;
/** On shutdown, requests in flight get this long to finish before their connections are closed. */
const SHUTDOWN_GRACE_MS = 5_000;
/** How long the known-models list (for 404 vs 503) is cached, ms. */
const KNOWN_MODELS_TTL_MS = 10_000;
/**
 * Database calls of the record writer and the ledger give up after these times, so an unreachable database
 * (a cut network hangs a connection instead of refusing it) is detected and work goes to the spool, ms.
 */
export const DB_CONNECT_TIMEOUT_MS = 5_000;
export const DB_QUERY_TIMEOUT_MS = 15_000;

export interface GatewayOptions {
  db: Db;
  /** The same database, for the record writer's batched inserts. */
  databaseUrl: string;
  log: Logger;
  hubId: string;
  gatewayId: string;
  tls: TlsIdentity;
  /** Where settlements and records wait while the database is unreachable (`DATA_DIR/spool`). */
  spoolDir: string;
  /** Address the API and agent listeners bind to. */
  host?: string;
  apiPort?: number;
  agentPort?: number;
  /** Address and port of the admin listener (`/admin/v1/…`, `/metrics`): loopback by default. */
  adminHost?: string;
  adminPort?: number;
  /** The origin agents dial, published for enrollment commands; the agent listener's own origin when unset. */
  agentPublicUrl?: string;
  /**
   * The origin of this gateway's agent listener as the other gateways dial it to forward requests (peers/): never a
   * load balancer in front of several gateways. The agent listener's own origin when unset.
   */
  peerPublicUrl?: string;
  limits?: Partial<ProxyLimits>;
  /** Failover bounds and circuit breaker settings (routing/). */
  routing?: RoutingOptions;
  /** Reserve-then-settle billing against the official price table; off when null. */
  billing?: { defaultMaxOutputTokens: number; leases?: LeaseOptions; deferred?: Partial<DeferredOptions> } | null;
  /** Bearer token for the admin API (`/admin/v1/…`); the admin API is off when unset. */
  adminToken?: string;
  /** Throttling of wrong admin tokens per client address. */
  adminAuth?: Partial<FailureThrottleOptions>;
  /** Owner accounts that may share one agent egress address before each further one is flagged (risk/egress.ts). */
  egressOwnersPerAddressMax?: number;
  /** A request between linked accounts: its earning held for review, or only flagged (risk/linked_accounts.ts; default hold). */
  linkedEarnings?: LinkedEarningsMode;
  /** How often old egress probes are deleted, ms (default EGRESS_PRUNE_INTERVAL_MS). */
  egressPruneIntervalMs?: number;
  /** Quality canaries through the agents this gateway holds (risk/canary.ts); off when absent or `intervalMs` is 0. */
  canaries?: Pick<CanaryOptions, "intervalMs" | "firstDelayMsMax" | "tickMs" | "timeoutMs">;
  /** The in-memory filter of issued keys: lookups allowed per second for keys it does not hold, rebuild interval. */
  keyFilter?: { missLookupsPerSecond?: number; rebuildIntervalMs?: number };
  tunnel?: Partial<Omit<TunnelSettings, "hubId">>;
  /** The hub's receipt countersigning key (Ed25519 PKCS#8); `receipt-key.pk8` beside the spool folder when unset. */
  receiptKeyFile?: string;
  /** The hub's rebuild key (AES-256, ledger/hub_record.ts); `rebuild-key.bin` beside the spool folder when unset. */
  rebuildKeyFile?: string;
  /** How often each connected agent's chain tail is compared, ms. */
  chainTailIntervalMs?: number;
  /** Day partitions and the archive job (docs/operations/database.md); partitions only are kept when null. */
  archive?: ArchiveConfig | null;
  /** Redis, where every gateway counts limits; null: this process counts them (a single gateway only). */
  redisUrl?: string | null;
  limiter?: Partial<LimiterSettings>;
  /**
   * Set in a worker of several gateway processes on one machine (cluster.ts). The API and agent ports are then
   * shared with the other workers; this worker also takes forwarded requests on a peer listener of its own
   * (`peerPort` on HOST, 0: a free port), its peer URL being that port on PEER_PUBLIC_URL's host (or HOST), and
   * its admin listener is private (loopback, a free port), answering only the primary, which proxies the admin
   * port to it and names the client's address in a header.
   */
  worker?: { peerPort: number; adminProxySecret: string };
}

export interface LimiterSettings {
  /** Prefix of every Redis key (e.g. `ws:`; several hubs or test runs may share one Redis). */
  redisPrefix: string;
  /** A Redis command slower than this counts as Redis unreachable, ms. */
  redisCommandTimeoutMs: number;
  /** Requests one user may have in flight across all keys and gateways (0 = no limit). */
  userConcurrencyMax: number;
  /** Share of each limit one gateway may hold as a local slice. */
  sliceFraction: number;
  /** A local slice unused this long goes back to Redis, ms. */
  sliceIdleMs: number;
  /** A gateway's concurrency slots expire this long after it stops renewing them (it crashed), ms. */
  slotHoldMs: number;
}

export const DEFAULT_LIMITER_SETTINGS: LimiterSettings = {
  redisPrefix: "ws:",
  redisCommandTimeoutMs: REDIS_COMMAND_TIMEOUT_MS_DEFAULT,
  userConcurrencyMax: USER_CONCURRENCY_MAX_DEFAULT,
  sliceFraction: LIMITS_SLICE_FRACTION_DEFAULT,
  sliceIdleMs: LIMITS_SLICE_IDLE_MS_DEFAULT,
  slotHoldMs: SLOT_HOLD_MS_DEFAULT,
};

export interface Gateway {
  apiOrigin: string;
  agentOrigin: string;
  adminOrigin: string;
  tunnelUrl: string;
  registry: AgentRegistry;
  routing: Routing;
  records: RecordWriter;
  close(): Promise<void>;
}

/**
 * Connections the kernel may queue for accept() on each listener (Node's default is 511). A burst of new
 * clients while the event loop is busy overflowed 511 in the S3 benchmark, and a dropped SYN costs the
 * client a 1 s retransmit; the kernel caps it at net.core.somaxconn.
 */
export const LISTEN_BACKLOG = 4096;

/**
 * How often the hub sends each connected agent its chain tail to compare (also right after the handshake) and
 * offers again the settlements that still have no receipt, ms.
 */
export const CHAIN_TAIL_INTERVAL_MS_DEFAULT = 60_000;

/**
 * `exclusive`: in a cluster worker, a port of this worker's own (not shared with the other workers through the
 * primary).
 */
function listen(server: http.Server, port: number, host: string, exclusive = false): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG, exclusive }, () => {
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
  // Agents on the other gateways, reached by forwarding (peers/); announced once the agent listener listens.
  const peers = new Peers({
    db,
    gatewayId: opts.gatewayId,
    pin: opts.tls.pin,
    settings: {
      streamWindowBytes: tunnelSettings.streamWindowBytes,
      connectionWindowBytes: tunnelSettings.connectionWindowBytes,
      concurrentStreamsMax: tunnelSettings.concurrentStreamsMax,
    },
    registry,
    log,
  });
  // Breakers the portal shows: this gateway's rows from a previous run (same id) are stale.
  const breakerSnapshot = new BreakerSnapshot(db, opts.gatewayId, log);
  await breakerSnapshot.clear();
  const sticky = new StickyRoutes(db, log);
  const stopPruningRoutes = sticky.startPruning();
  const files = new FileRoutes(db, log);
  const messageBatches = new MessageBatchRoutes(db, log);
  const routing = new Routing(registry, { ...opts.routing, sticky, files, remote: peers, snapshot: breakerSnapshot });
  const directory = new AgentDirectory(db, log);
  const recordsPool = new pg.Pool({
    connectionString: opts.databaseUrl,
    max: 8,
    connectionTimeoutMillis: DB_CONNECT_TIMEOUT_MS,
    query_timeout: DB_QUERY_TIMEOUT_MS,
  });
  // Once the pool is ended its clients close in the background (pg-pool's end() does not wait for their sockets): a
  // database stopping right after the gateway (the embedded one under `npm start`) may still reach one of them
  // with "terminating connection", which is no fault then.
  let recordsPoolEnded = false;
  recordsPool.on("error", (error) => {
    if (!recordsPoolEnded) log.warn("records.pool_error", { error });
  });
  const receiptKey = await loadHubReceiptKey(opts.receiptKeyFile ?? join(dirname(opts.spoolDir), "receipt-key.pk8"));
  const rebuildKey = await loadRebuildKey(opts.rebuildKeyFile ?? join(dirname(opts.spoolDir), REBUILD_KEY_FILE));
  const sealer = new HubRecordSealer(recordsPool, rebuildKey, log);
  const edgeReceipts = new EdgeReceipts(db, receiptKey, log, Date.now, { sealer, rebuildKey });
  const sendTail = (conn: AgentConnection) =>
    void edgeReceipts
      .tail(conn.agentId!)
      .then((t) => conn.sendChainTail({ seq: t.seq, hash: toBase64Url(t.hash) }))
      .catch((error: unknown) => log.warn("ledger.tail_failed", { agentId: conn.agentId, error }));
  // Settlements without a receipt (a statement that went to a connection that had died, one the agent could not sign
  // yet) are offered again to the live agent with each tail, one page at a time through the whole resend window:
  // each connection's cursor continues where its last page ended. One page at a time per connection.
  const reofferCursors = new WeakMap<AgentConnection, ReofferCursor | null>();
  const reoffering = new WeakSet<AgentConnection>();
  const reoffer = (conn: AgentConnection) => {
    if (reoffering.has(conn)) return;
    reoffering.add(conn);
    void edgeReceipts
      .reofferPage(conn.agentId!, reofferCursors.get(conn) ?? null)
      .then(({ statements, next }) => {
        reofferCursors.set(conn, next);
        statements.forEach((st) => conn.sendSettlement(st));
      })
      .catch((error: unknown) => log.warn("ledger.reoffer_failed", { agentId: conn.agentId, error }))
      .finally(() => reoffering.delete(conn));
  };
  const tailTimer = setInterval(
    () =>
      registry.connections().forEach((conn) => {
        if (!conn.keepsLedger) return;
        sendTail(conn);
        reoffer(conn);
      }),
    opts.chainTailIntervalMs ?? CHAIN_TAIL_INTERVAL_MS_DEFAULT,
  );
  tailTimer.unref();
  const releases = new AgentReleases(db, log);
  // Presence lasts as long as this gateway would keep a silent agent: its heartbeat timeout.
  const egress = new EgressProbes({ db, log, ownersPerAddressMax: opts.egressOwnersPerAddressMax });
  // Old probes go (EGRESS_PROBE_RETENTION_MS): every gateway runs it, a delete of rows already gone is a no-op.
  const egressPruneTimer = setInterval(
    () => void egress.prune().catch((error: unknown) => log.warn("risk.egress_prune_failed", { error })),
    opts.egressPruneIntervalMs ?? EGRESS_PRUNE_INTERVAL_MS,
  );
  egressPruneTimer.unref();
  const endpointReports = new EndpointReportThrottle();
  const identities = new IdentityGuard({
    db,
    gatewayId: opts.gatewayId,
    probeTimeoutMs: tunnelSettings.presenceProbeTimeoutMs,
    presenceTtlMs: tunnelSettings.heartbeatTimeoutMs,
    log,
  });
  const keyFilter = new KeyFilter();
  const keys = new KeyVerifier(db, { filter: keyFilter, missLookupsPerSecond: opts.keyFilter?.missLookupsPerSecond ?? KEY_FILTER_MISS_LOOKUPS_PER_S_DEFAULT });
  const keyFilterLoader = new KeyFilterLoader(
    keyFilter,
    () => activeKeyPrefixes(recordsPool),
    log,
    opts.keyFilter?.rebuildIntervalMs ?? KEY_FILTER_REBUILD_INTERVAL_MS_DEFAULT,
  );
  const health = new LedgerHealth(log);
  const recordSpool = new Spool<RequestRecordInput>(opts.spoolDir, opts.gatewayId, "records", RECORD_CODEC, log);
  const settlementSpool = new Spool<SpooledSettlement>(opts.spoolDir, opts.gatewayId, "settlements", SETTLEMENT_CODEC, log);
  await recordSpool.open();
  await settlementSpool.open();
  const records = new RecordWriter(recordsPool, log, recordSpool);
  let knownCache: { at: number; models: Map<ApiFamily, Set<string>> } | null = null;
  const knownModels = async (api: ApiFamily): Promise<ReadonlySet<string>> => {
    if (!knownCache || Date.now() - knownCache.at > KNOWN_MODELS_TTL_MS) knownCache = { at: Date.now(), models: await knownModelsByFamily(db) };
    return knownCache.models.get(api)!;
  };
  const prices = new PriceBook(db);
  const tariffs = new Tariffs(db);
  const ledger = new Ledger(recordsPool);
  const treasury = new Treasury(recordsPool);
  const leaseOptions = opts.billing?.leases ?? DEFAULT_LEASE_OPTIONS;
  const settlements = new SettlementBatcher(ledger, log, health, settlementSpool, leaseOptions.gatewayDeadAfterMs);
  const leases = opts.billing ? new CreditLeases(ledger, opts.gatewayId, opts.hubId, health, log, leaseOptions) : null;
  // Known to the ledger (and to other gateways' sweeps) before it serves anything.
  await leases?.heartbeat();
  // Each gateway canaries the agents it holds (an agent is held by one gateway at a time): no leader needed. With
  // billing on, the platform pays the owner for each canary that passed.
  const canaryPayments = opts.billing ? new CanaryPayments(recordsPool, prices, tariffs) : null;
  const canaries = new CanaryScheduler({ db, log, registry, intervalMs: 0, ...opts.canaries, pay: canaryPayments ? (u) => canaryPayments.pay(u) : null });
  canaries.start();
  const selfDealing = new SelfDealingDetector(db, new LinkedAccounts(viaPrisma(db)), opts.linkedEarnings);
  const meter = new Meter(
    opts.billing && leases
      ? {
          defaultMaxOutputTokens: opts.billing.defaultMaxOutputTokens,
          settlements,
          leases,
          prices,
          tariffs,
          onUsageCapped: (capped, written) => recordUsageDivergence(db, capped, written),
          onServed: (served, written) => selfDealing.check(served, written),
        }
      : null,
    log,
  );
  log.info("gateway.billing", { mode: meter.billingOn ? "on" : "off" });
  // Background responses settle after their create call: each gateway polls the ones its agents made (no leader).
  const deferred = new DeferredSettlements({
    pool: recordsPool,
    log,
    localAgent: (agentId) => {
      const conn = registry.get(agentId);
      return conn && !conn.isClosed ? conn : undefined;
    },
    localAgentIds: () => registry.connections().flatMap((c) => (c.agentId && !c.isClosed ? [c.agentId] : [])),
    records,
    sealer,
    options: opts.billing?.deferred,
    // The limiter starts further down; the poller starts after it (below), so no settlement misses its correction.
    refundBudget: (taken, amountMicros) => limiterRef?.refundBudget(taken, amountMicros),
  });
  let limiterRef: Limiter | null = null;
  const accountDeps = {
    pool: recordsPool,
    prices,
    tariffs,
    treasury,
    liveModels: (api: ApiFamily) => [...new Set([...registry.models(api), ...peers.models(api)])].sort(),
  };
  const adminDeps = {
    routing,
    db,
    pool: recordsPool,
    ledger,
    treasury,
    prices,
    registry,
    log,
    tokenHash: adminTokenHash(opts.adminToken),
    throttle: new FailureThrottle({ ...ADMIN_AUTH_DEFAULTS, ...opts.adminAuth }),
    now: Date.now,
    // A worker's admin listener hears only the primary, which names the client's address (cluster.ts).
    clientAddress: opts.worker ? (req: http.IncomingMessage) => String(req.headers[ADMIN_CLIENT_ADDRESS_HEADER] ?? "unknown") : undefined,
  };

  const pushPrices = async (to: readonly AgentConnection[]) => {
    const t = await prices.current();
    if (t.ver === 0) return;
    const message = priceTableMessage(t);
    for (const conn of to) conn.sendPriceTable(message);
  };
  const onHubEvent = hubEventHandler({ db, registry, prices, tariffs, keys, keyFilter, keyFilterLoader, pushPrices, releases, log });
  const events = new HubEventListener(
    opts.databaseUrl,
    onHubEvent,
    () => {
      prices.invalidate();
      tariffs.invalidate();
      releases.invalidate();
      keys.forgetAll();
      void keyFilterLoader.rebuild().catch(() => {});
      void pushPrices(registry.connections()).catch((error: unknown) => log.error("prices.push_failed", { error }));
    },
    log,
  );
  await events.start();
  // Built after LISTEN started, so no key created meanwhile is missed; the gateway serves only with a filter.
  await keyFilterLoader.start();
  const limiter = await startLimiter(opts, recordsPool, leaseOptions.gatewayDeadAfterMs);
  limiterRef = limiter;
  deferred.start();
  // Limits counted locally because Redis does not answer are an admin alert (System page): written when it changes.
  let limitsDegradedWritten: number | null = null;
  const limitsStatusTimer = setInterval(() => {
    const since = limiter.degradedSince; // epoch ms, or null
    if (since === limitsDegradedWritten) return;
    const before = limitsDegradedWritten;
    limitsDegradedWritten = since;
    reportLimitsDegraded(recordsPool, opts.gatewayId, since === null ? null : new Date(since)).catch((error: unknown) => {
      limitsDegradedWritten = before; // written again on the next tick
      log.warn("gateway.limits_status_failed", { error });
    });
  }, LIMITS_STATUS_INTERVAL_MS);
  // Prohibited terms an admin manages, read on each JSON body before it is forwarded.
  const content = new ContentRules(db, log);
  await content.start();
  const deps = {
    registry,
    routing,
    keys,
    records,
    gatewayId: opts.gatewayId,
    limits,
    log,
    knownModels,
    meter,
    freeRoutes: new FreeRouteLimiter(),
    limiter,
    content,
    sealer,
    deferred: meter.billingOn ? deferred : null,
    messageBatches,
  };

  // --- API listener: the public, OpenAI- and Anthropic-compatible API ---
  const apiRoutes = new Router("api", log, familyOfPath)
    .on("GET /healthz", ({ res }) => json(res, 200, { ok: true }))
    .on("GET /readyz", ({ res }) => {
      // Ready while the ledger answers (without it this gateway grants no new credit; its settlements spool)
      // and the tunnel listener accepts agents.
      const ready = health.up && agentServer.listening;
      json(res, ready ? 200 : 503, {
        ready,
        ledger: health.up ? "reachable" : "unreachable",
        // shared: Redis; local: Redis unreachable, each limit ÷ live gateways here; in-process: no Redis configured.
        limits: limiter.mode === "redis" ? "shared" : limiter.mode === "local" ? "local" : "in-process",
        tunnel: agentServer.listening ? "listening" : "closed",
        ...(health.downSince !== null ? { ledgerDownSince: new Date(health.downSince).toISOString() } : {}),
        spooledSettlements: settlements.spooled,
        spooledRecords: records.spooled,
      });
    })
    .on(
      "GET /v1/models",
      withPrincipal(keys, ({ req, res }, principal) => handleModels(req, res, principal, accountDeps)),
    )
    .on(
      "GET /v1/dashboard/billing/subscription",
      withPrincipal(keys, ({ res }, principal) => handleBillingSubscription(res, principal, accountDeps)),
    )
    .on(
      "GET /v1/dashboard/billing/usage",
      withPrincipal(keys, ({ url, res }, principal) => handleBillingUsage(url, res, principal, accountDeps)),
    )
    .on(
      "POST /v1/billing/redeem",
      withPrincipal(keys, ({ req, res }, principal) => handleRedeem(req, res, principal, accountDeps)),
    )
    .on(
      "GET /v1/files",
      withPrincipal(keys, async ({ req, res, url }, principal) => {
        if (isAnthropicFilesCall(url.pathname, req.headers)) return anthropicFilesRefused(res);
        // Answered from the hub's own file routes: only this user's files (a provider's list would show the owner's).
        const wait = deps.freeRoutes.take(principal.keyId);
        observeLimiter("free_routes", wait === null ? "allowed" : "refused");
        if (wait !== null) throw freeRouteLimited(deps.freeRoutes, wait);
        const query = fileListQuery(url.searchParams);
        if ("problem" in query) throw new GatewayError("invalid_request", query.problem, { param: query.param });
        json(res, 200, await files.list(principal.userId, query));
      }),
    )
    .on(
      "GET /v1/messages/batches",
      withPrincipal(keys, async ({ res, url }, principal) => {
        // Answered from the hub's own batch routes: only this user's batches (a provider's list would show the owner's).
        const wait = deps.freeRoutes.take(principal.keyId);
        observeLimiter("free_routes", wait === null ? "allowed" : "refused");
        if (wait !== null) throw freeRouteLimited(deps.freeRoutes, wait);
        const query = messageBatchListQuery(url.searchParams);
        if ("problem" in query) throw new GatewayError("invalid_request", query.problem);
        json(res, 200, await messageBatches.list(principal.userId, query));
      }),
    )
    .on(
      "GET /v1/batches",
      withPrincipal(keys, async ({ res, url }, principal) => {
        // Answered from the hub's own rows: only this user's batches (a provider's list would show the owner's).
        const wait = deps.freeRoutes.take(principal.keyId);
        observeLimiter("free_routes", wait === null ? "allowed" : "refused");
        if (wait !== null) throw freeRouteLimited(deps.freeRoutes, wait);
        const query = batchListQuery(url.searchParams);
        if ("problem" in query) throw new GatewayError("invalid_request", query.problem, { param: query.param });
        json(res, 200, await listBatches(recordsPool, principal.userId, query));
      }),
    )
    .otherwise(({ req, res, url }) => {
      if (isAssistantsPath(url.pathname)) {
        throw new GatewayError(
          "api_retired",
          "The Assistants API (assistants, threads, runs) was shut down by OpenAI on 2026-08-26 and is not offered through this gateway. Use the Responses API (POST /v1/responses) instead.",
        );
      }
      if (isAnthropicFilesCall(url.pathname, req.headers)) return anthropicFilesRefused(res);
      if (url.pathname === "/v1/files" || url.pathname === "/v1/files/") {
        if (req.method !== "POST") throw new GatewayError("method_not_allowed", `${req.method} is not allowed on /v1/files; use GET or POST.`);
        return proxyRequest(req, res, FILE_UPLOAD_ROUTE, deps);
      }
      if (url.pathname === "/v1/messages/batches" || url.pathname === "/v1/messages/batches/") {
        if (req.method !== "POST") throw new GatewayError("method_not_allowed", `${req.method} is not allowed on /v1/messages/batches; use GET or POST.`);
        return proxyRequest(req, res, MESSAGE_BATCH_CREATE_ROUTE, deps);
      }
      if (url.pathname === "/v1/batches" || url.pathname === "/v1/batches/") {
        if (req.method !== "POST") throw new GatewayError("method_not_allowed", `${req.method} is not allowed on /v1/batches; use GET or POST.`);
        return proxyRequest(req, res, BATCH_CREATE_ROUTE, deps);
      }
      const stored = findStoredObjectCall(req.method ?? "GET", url.pathname);
      if (stored && "allowed" in stored) {
        throw new GatewayError("method_not_allowed", `${req.method} is not allowed on ${url.pathname}; use ${stored.allowed.join(" or ")}.`);
      }
      if (stored) return proxyRequest(req, res, stored.route, deps, stored);
      const route = findRoute(url.pathname);
      if (!route) throw new GatewayError("route_not_found", `Unknown request URL: ${req.method} ${url.pathname}.`);
      if (req.method !== "POST") throw new GatewayError("method_not_allowed", `${req.method} is not allowed on ${route.path}; use POST.`);
      return proxyRequest(req, res, route, deps);
    });
  const api = http.createServer(apiRoutes.listener);
  api.keepAliveTimeout = API_KEEP_ALIVE_TIMEOUT_MS;
  api.headersTimeout = API_HEADERS_TIMEOUT_MS;
  api.requestTimeout = 0; // long generations are bounded by the proxy's own timeouts

  // --- admin listener: the admin API and metrics, for operators (loopback unless ADMIN_HOST says otherwise) ---
  const adminRoutes = new Router("admin", log, () => "openai")
    .on("GET /metrics", async ({ req, res }) => {
      res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE }).end(await metricsText());
      req.resume();
    })
    .under(
      "/admin/v1/",
      withAdmin(
        (req) => authorizeAdmin(req, adminDeps),
        ({ req, res, url }) => handleAdmin(req, res, url.pathname, adminDeps),
      ),
    );
  const workerSecret = opts.worker ? Buffer.from(opts.worker.adminProxySecret) : null;
  const admin = http.createServer(
    workerSecret
      ? (req, res) => {
          if (!proxySecretMatches(req.headers[ADMIN_PROXY_SECRET_HEADER], workerSecret)) {
            res.writeHead(403, { "content-type": "text/plain" }).end("This listener answers only the gateway's primary process.\n");
            req.resume();
            return;
          }
          adminRoutes.listener(req, res);
        }
      : adminRoutes.listener,
  );

  // --- agent listener: TLS only; enrollment, signed agent releases, health, and (below) the tunnel's WebSocket upgrade ---
  const agentRoutes = new Router("agent_listener", log, () => "openai")
    .on(`POST ${ENROLL_PATH}`, ({ req, res }) => handleEnroll(req, res, db, opts.hubId))
    .under(RELEASES_PATH, async ({ req, res, url }) => void (await releases.handle(req, res, url.pathname)))
    .on("GET /agent/v1/healthz", ({ res }) => json(res, 200, { ok: true, hubId: opts.hubId }))
    // The egress echo: the address this request came from, for the probe whose nonce it carries (risk/egress.ts).
    .on(`GET ${EGRESS_ECHO_PATH}`, async ({ req, res, url }) => {
      const address = plainAddress(req.socket.remoteAddress ?? "");
      const nonce = url.searchParams.get("nonce") ?? "";
      if (!address || !(await egress.echo(nonce, address))) throw new GatewayError("not_found", "No egress probe is waiting for this nonce.");
      json(res, 200, { address });
    });
  const agentServer = https.createServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: "TLSv1.2" }, agentRoutes.listener);
  // A worker of several processes: the same routes on a port of its own, where the other gateways' links reach it.
  const peerServer = opts.worker ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: "TLSv1.2" }, agentRoutes.listener) : null;
  const wss = new WebSocketServer({ noServer: true, maxPayload: FRAME_BYTES_MAX, perMessageDeflate: false });
  const onUpgrade = (req: http.IncomingMessage, socket: import("node:stream").Duplex, head: Buffer) => {
    const path = new URL(req.url ?? "/", "https://hub").pathname;
    if (path === PEER_PATH) {
      peers.upgrade(wss, req, socket, head);
      return;
    }
    if (path !== TUNNEL_PATH) {
      // A rejected upgrade gets a real HTTP status before the socket closes.
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      (socket as import("node:net").Socket).setNoDelay(true);
      new AgentConnection(
        ws,
        req,
        directory,
        tunnelSettings,
        {
          admit: async (conn, _agent, previousSessionId) => {
            // Below the minimum version: refused before it takes the identity's presence.
            const byVersion = await releases.admit(conn);
            return byVersion.admitted ? identities.admit(conn, previousSessionId) : byVersion;
          },
          alive: (conn) => identities.renew(conn),
          ready: (conn, agent) => {
            knownCache = null;
            registry.add(conn);
            registry.setProfile(agent);
            void pushPrices([conn]).catch((error: unknown) => log.error("prices.push_failed", { agentId: conn.agentId, error }));
            void releases.announce([conn]).catch((error: unknown) => log.error("releases.announce_failed", { agentId: conn.agentId, error }));
            if (conn.keepsLedger) sendTail(conn);
            void egress
              .start({ agentId: agent.id, ownerId: agent.ownerId, sessionId: conn.sessionId, tunnelAddress: conn.remoteIp })
              .then((nonce) => conn.sendEgressProbe(nonce))
              .catch((error: unknown) => log.warn("risk.egress_probe_failed", { agentId: agent.id, error }));
            if (conn.keepsLedger)
              void edgeReceipts
                .unreceipted(conn.agentId!)
                .then((statements) => statements.forEach((st) => conn.sendSettlement(st)))
                .catch((error: unknown) => log.warn("ledger.resend_failed", { agentId: conn.agentId, error }));
          },
          inventory: (conn, inventory) => {
            knownCache = null;
            registry.reindex(conn);
            directory.inventory(conn.agentId!, inventory);
            const owner = registry.profile(conn.agentId!)?.ownerId;
            if (owner)
              void checkKeyReuse(db, { id: conn.agentId!, ownerId: owner }, inventory.keyFingerprints).catch((error: unknown) =>
                log.error("risk.flag_failed", { agentId: conn.agentId, kind: KEY_FINGERPRINT_REUSE, error }),
              );
          },
          priceAck: (conn, ver) => directory.priceAck(conn.agentId!, ver),
          // Verified with the key the session authenticated with (no lookup per batch).
          receipts: (conn, batch) => edgeReceipts.accept({ id: conn.agentId!, publicKey: conn.publicKey! }, batch),
          chainTail: (conn, tail) =>
            void edgeReceipts
              .reportedTail(conn.agentId!, tail)
              .catch((error: unknown) => log.warn("ledger.reported_tail_failed", { agentId: conn.agentId, error })),
          rateState: (conn, state) => directory.rateState(conn.agentId!, state),
          endpointReport: (conn, report) => {
            const admission = endpointReports.admit(conn.agentId!);
            if (!admission.take) {
              if (admission.firstDropped)
                log.warn("tunnel.endpoint_reports_dropped", { agentId: conn.agentId, perWindowMax: endpointReports.limits.perAgentMax });
              return;
            }
            log.warn("tunnel.endpoint_forbidden", { agentId: conn.agentId, requestId: report.requestId, host: report.host, outside: report.outside });
            void raiseEndpointForbidden(db, conn.agentId!, report, { sessionId: conn.sessionId, tunnelAddress: conn.remoteIp, at: new Date() }).catch(
              (error: unknown) => log.error("risk.flag_failed", { agentId: conn.agentId, kind: ENDPOINT_FORBIDDEN, error }),
            );
          },
          egressAnswer: (conn, answer) =>
            void egress
              .answer(conn.agentId!, answer)
              .catch((error: unknown) => log.error("risk.flag_failed", { agentId: conn.agentId, kind: "egress", error })),
          closed: (conn) => {
            registry.remove(conn);
            identities.forget(conn);
          },
        },
        log,
      );
    });
  };
  for (const server of peerServer ? [agentServer, peerServer] : [agentServer]) {
    // Small frames must leave at once: Nagle plus delayed ACKs would add ~40 ms to small exchanges.
    server.on("connection", (socket: import("node:net").Socket) => socket.setNoDelay(true));
    server.on("upgrade", onUpgrade);
  }

  // Day partitions ahead of time, and old days moved to the archive store (one gateway at a time does it).
  const archiveJob = opts.archive ? new ArchiveJob(opts.databaseUrl, opts.archive, log) : null;
  await archiveJob?.start();
  const detachMetrics = attachGateway({
    agentsConnected: () => registry.connections().length,
    streamsOpen: () => registry.connections().reduce((n, c) => n + c.inFlight, 0),
    heldResponseBytes: () => registry.connections().reduce((n, c) => n + c.heldResponseBytes, 0),
    bufferedBytes: () => registry.connections().reduce((n, c) => n + c.bufferedBytes, 0),
    creditLeasesOpen: () => leases?.active ?? 0,
    ledgerUp: () => health.up,
    tunnelListening: () => agentServer.listening,
    spooledSettlements: () => settlements.spooled,
    spooledRecords: () => records.spooled,
    recordsDropped: () => records.dropped,
    keyChecks: () => keys.counts,
    keyFilterEntries: () => keyFilter.size,
    keyMissBudget: () => keys.missBudgetAvailable(),
    limitsDegraded: () => limiter.mode === "local",
    breakerStates: () => {
      let open = 0;
      let halfOpen = 0;
      for (const b of routing.breakers.list()) {
        if (b.state === "open") open++;
        else if (b.state === "half_open") halfOpen++;
      }
      return { open, halfOpen };
    },
  });
  const apiPort = await listen(api, opts.apiPort ?? 0, host);
  const agentPort = await listen(agentServer, opts.agentPort ?? 0, host);
  const adminHost = opts.adminHost ?? "127.0.0.1";
  const adminPort = opts.worker ? await listen(admin, 0, "127.0.0.1", true) : await listen(admin, opts.adminPort ?? 0, adminHost);
  const peerPort = peerServer ? await listen(peerServer, opts.worker!.peerPort, host, true) : null;
  const apiOrigin = `http://${host}:${apiPort}`;
  const agentOrigin = `https://${host}:${agentPort}`;
  const adminOrigin = opts.worker ? `http://127.0.0.1:${adminPort}` : `http://${adminHost}:${adminPort}`;
  const agentPublicUrl = opts.agentPublicUrl ?? agentOrigin;
  const peerUrl = peerPort === null ? (opts.peerPublicUrl ?? agentOrigin) : withPort(opts.peerPublicUrl ?? agentOrigin, peerPort);
  if (!opts.peerPublicUrl && isWildcard(host)) {
    log.warn("gateway.peer_url_unknown", {
      agentOrigin,
      note: "HOST is a wildcard address: set PEER_PUBLIC_URL to the origin other gateways dial to forward requests here",
    });
  }
  if (!opts.agentPublicUrl && isWildcard(host)) {
    log.warn("gateway.agent_url_unknown", {
      agentOrigin,
      note: "HOST is a wildcard address: set AGENT_PUBLIC_URL to the origin agents dial, or enrollment commands name an address they cannot reach",
    });
  }
  await peers.start(peerUrl);
  // What enrollment commands (operator CLI, portal) print: the origin agents dial and the key they pin.
  await publishHubEndpoint(db, { hubId: opts.hubId, agentUrl: agentPublicUrl, tunnelPin: opts.tls.pin });
  log.info("gateway.listening", {
    apiOrigin,
    agentOrigin,
    adminOrigin,
    agentPublicUrl,
    peerUrl,
    hubId: opts.hubId,
    gatewayId: opts.gatewayId,
    tunnelPin: opts.tls.pin,
  });

  return {
    apiOrigin,
    agentOrigin,
    adminOrigin,
    tunnelUrl: `wss://${host}:${agentPort}${TUNNEL_PATH}`,
    registry,
    routing,
    records,
    async close() {
      // The others stop forwarding here first; requests they forward meanwhile fail over to other agents.
      await peers.close();
      await breakerSnapshot.clear().catch((error: unknown) => log.warn("routing.breaker_snapshot_failed", { error }));
      for (const conn of registry.connections()) conn.goAway();
      // Stop accepting; idle keep-alive connections go now, requests in flight get a grace period.
      const apiClosed = new Promise<void>((resolve) => api.close(() => resolve()));
      api.closeIdleConnections();
      const grace = setTimeout(() => api.closeAllConnections(), SHUTDOWN_GRACE_MS);
      await apiClosed;
      clearTimeout(grace);
      const adminClosed = new Promise<void>((resolve) => admin.close(() => resolve()));
      admin.closeAllConnections();
      await adminClosed;
      keyFilterLoader.close();
      clearInterval(tailTimer);
      clearInterval(egressPruneTimer);
      canaries.stop();
      await deferred.close();
      clearInterval(limitsStatusTimer);
      stopPruningRoutes();
      content.stop();
      archiveJob?.close();
      for (const client of wss.clients) client.terminate();
      // Agents reconnecting to another gateway are admitted at once, not after their presence runs out.
      await identities.releaseAll().catch((error: unknown) => log.warn("tunnel.presence_failed", { error }));
      for (const server of peerServer ? [agentServer, peerServer] : [agentServer]) {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
      }
      await settlements.drain();
      await limiter.close();
      limiter.closeRedis();
      await leases?.close();
      await records.flush();
      records.close();
      await settlementSpool.close();
      await recordSpool.close();
      await events.close();
      recordsPoolEnded = true;
      await recordsPool.end();
      detachMetrics();
    },
  };
}

/**
 * The limiter: Redis when configured (reachable or not: an unreachable Redis means local limits until it answers),
 * else this process — refused when another gateway is alive on the same database, since limits would then not add up.
 */
async function startLimiter(opts: GatewayOptions, pool: pg.Pool, deadAfterMs: number): Promise<Limiter & { closeRedis(): void }> {
  const settings = { ...DEFAULT_LIMITER_SETTINGS, ...opts.limiter };
  const { log } = opts;
  const redis = opts.redisUrl ? connectRedis(opts.redisUrl, log, settings.redisCommandTimeoutMs) : null;
  if (redis) {
    try {
      await whenRedisReady(redis, 3_000);
      await new RedisStore(redis).load();
      log.info("gateway.limits", { mode: "redis", prefix: settings.redisPrefix });
    } catch (error) {
      log.warn("gateway.limits", { mode: "local", note: "Redis does not answer: limits are counted here (each ÷ live gateways) until it does", error });
    }
  } else {
    // A gateway that crashed looks alive until its liveness runs out: only one still reporting itself is running.
    let others = await otherLiveGateways(pool, opts.gatewayId, deadAfterMs);
    if (others.length > 0) {
      const before = await gatewaysLastSeen(pool, others);
      await new Promise((resolve) => setTimeout(resolve, opts.billing?.leases?.renewIntervalMs ?? DEFAULT_LEASE_OPTIONS.renewIntervalMs).unref?.());
      const after = await gatewaysLastSeen(pool, others);
      others = others.filter((id) => after.get(id) !== undefined && after.get(id) !== before.get(id));
    }
    if (others.length > 0) {
      throw new Error(
        `Cannot start the gateway: gateway ${others.join(", ")} is running on this database and REDIS_URL is unset; several gateways must share limits through Redis: set REDIS_URL on every gateway`,
      );
    }
    log.info("gateway.limits", { mode: "in-process", note: "REDIS_URL is unset: limits are kept in this process (one gateway only)" });
  }
  const limiter = new Limiter({
    gatewayId: opts.gatewayId,
    shared: redis ? new RedisStore(redis, settings.slotHoldMs) : null,
    prefix: settings.redisPrefix,
    userConcurrencyMax: settings.userConcurrencyMax,
    sliceFraction: settings.sliceFraction,
    sliceIdleMs: settings.sliceIdleMs,
    redisRetryMs: LIMITS_REDIS_RETRY_MS_DEFAULT,
    slotHoldMs: settings.slotHoldMs,
    liveGateways: () => liveGatewayCount(pool, deadAfterMs),
    monthSpendMicros: (keyId, since) => keyChargedSinceMicros(pool, keyId, since),
    ping: () => (redis ? redisAnswers(redis) : Promise.resolve(false)),
    log,
  });
  limiter.start();
  return Object.assign(limiter, { closeRedis: () => redis?.disconnect() });
}

const isWildcard = (host: string) => host === "0.0.0.0" || host === "::" || host === "[::]";

/** `origin` with its port replaced. */
function withPort(origin: string, port: number): string {
  const u = new URL(origin);
  u.port = String(port);
  return u.origin;
}

/** The header by which the primary proves a request on a worker's admin listener comes from it (cluster.ts). */
export const ADMIN_PROXY_SECRET_HEADER = "x-wellspring-admin-proxy";
/** The header in which the primary names the admin client's address (for the wrong-token throttle). */
export const ADMIN_CLIENT_ADDRESS_HEADER = "x-wellspring-admin-client";

function proxySecretMatches(presented: string | string[] | undefined, secret: Buffer): boolean {
  const p = Buffer.from(typeof presented === "string" ? presented : "");
  return p.length === secret.length && timingSafeEqual(p, secret);
}

/**
 * `/v1/files` called with Anthropic's client (anthropic-version / anthropic-beta headers): Anthropic's Files API
 * (beta) is not offered, in Anthropic's error shape.
 */
function anthropicFilesRefused(res: http.ServerResponse): void {
  sendError(
    res,
    "anthropic",
    new GatewayError(
      "route_not_found",
      "Anthropic's Files API (beta) is not offered through this gateway: files are kept only through OpenAI provider keys (OpenAI's /v1/files). Send documents inline in /v1/messages.",
    ),
  );
}
