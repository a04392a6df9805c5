/**
 * The gateway's Prometheus metrics (`prom-client`), rendered by `GET /metrics` on the admin listener.
 *
 * One registry per process. Counters and histograms that the request path and the tunnel observe live here as
 * module-level objects, so an observation is one call with no plumbing (`observeRequestEnd(…)`); gauges read
 * the state of every gateway started in this process when Prometheus scrapes (`attachGateway`), so nothing is
 * computed between scrapes. Label values are bounded: routes come from the route table, end causes from an
 * enum, and model names only from requests an agent was chosen for, at most MODEL_LABELS_MAX distinct ones
 * (later ones are counted as `other`). Never a key, a user id or any content.
 */
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { tunnelCounters, TUNNEL_FRAME_TYPE_NAMES } from "./tunnel_counters.ts";

/** Distinct model label values at most; further models share `other`. */
export const MODEL_LABELS_MAX = 200;
/** Request latency buckets, seconds: from a cached small call to a long generation. */
const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** Settlement batch size buckets, settlements (SETTLE_BATCH_ENTRIES_MAX is 128). */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

export const registry = new Registry();

const requestDuration = new Histogram({
  name: "wellspring_request_duration_seconds",
  help: "Proxied API requests from arrival to their last byte (or refusal), by route, model and HTTP status class.",
  labelNames: ["route", "model", "status_class"] as const,
  buckets: LATENCY_BUCKETS_S,
  registers: [registry],
});
const requestTtfb = new Histogram({
  name: "wellspring_request_ttfb_seconds",
  help: "Time from a request's arrival to the provider's response head reaching the gateway, by route and model.",
  labelNames: ["route", "model"] as const,
  buckets: LATENCY_BUCKETS_S,
  registers: [registry],
});
const requestsTotal = new Counter({
  name: "wellspring_requests_total",
  help: "Proxied API requests that ended, by route, how they ended (end cause) and whether the response streamed.",
  labelNames: ["route", "end_cause", "streamed"] as const,
  registers: [registry],
});
const limiterDecisions = new Counter({
  name: "wellspring_limiter_decisions_total",
  help: "Rate limiter decisions by limiter and decision (allowed or refused).",
  labelNames: ["limiter", "decision"] as const,
  registers: [registry],
});
const billingDecisions = new Counter({
  name: "wellspring_billing_decisions_total",
  help: "Billing decisions before dispatch: held (worst case held against a lease), grown (a growing body held more), insufficient_quota, ledger_unavailable, unpriced.",
  labelNames: ["decision"] as const,
  registers: [registry],
});
const settlementBatchSize = new Histogram({
  name: "wellspring_settlement_batch_size",
  help: "Settlements written to PostgreSQL per statement.",
  buckets: BATCH_BUCKETS,
  registers: [registry],
});
const routingAttempts = new Counter({
  name: "wellspring_routing_attempts_total",
  help: "Attempts to serve a request on an agent, by result: served (the attempt answered the user), failed_over (it failed before the first byte and the next agent was tried), failed (it failed and nothing was left to try).",
  labelNames: ["result"] as const,
  registers: [registry],
});
const breakerTransitions = new Counter({
  name: "wellspring_breaker_transitions_total",
  help: "Circuit breaker (agent × model) state changes, by the state entered: open, half_open, closed.",
  labelNames: ["to"] as const,
  registers: [registry],
});
const archiveRows = new Counter({
  name: "wellspring_archive_rows_total",
  help: "Rows moved from the hot tables to the archive, by table.",
  labelNames: ["table"] as const,
  registers: [registry],
});

// --- tunnel: plain counters bumped per frame (tunnel_counters.ts), read at scrape time ---
new Counter({
  name: "wellspring_tunnel_frames_total",
  help: "Tunnel frames by direction (in: from agents, out: to agents) and frame type.",
  labelNames: ["direction", "type"] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const [direction, counts] of [
      ["in", tunnelCounters.framesIn],
      ["out", tunnelCounters.framesOut],
    ] as const) {
      counts.forEach((n, type) => {
        if (n > 0) this.inc({ direction, type: TUNNEL_FRAME_TYPE_NAMES[type] ?? "unknown" }, n);
      });
    }
  },
});
new Counter({
  name: "wellspring_tunnel_bytes_total",
  help: "Tunnel frame bytes (headers included) by direction.",
  labelNames: ["direction"] as const,
  registers: [registry],
  collect() {
    this.reset();
    this.inc({ direction: "in" }, tunnelCounters.bytesIn);
    this.inc({ direction: "out" }, tunnelCounters.bytesOut);
  },
});

/** What a running gateway exposes as gauges; read when Prometheus scrapes. */
export interface GatewayGaugeSources {
  agentsConnected(): number;
  streamsOpen(): number;
  heldResponseBytes(): number;
  bufferedBytes(): number;
  creditLeasesOpen(): number;
  ledgerUp(): boolean;
  tunnelListening(): boolean;
  spooledSettlements(): number;
  spooledRecords(): number;
  recordsDropped(): number;
  keyChecks(): { cache: number; lookups: number; missLookups: number; missRefused: number; queries: number; filterStale: number; staleServed: number };
  keyFilterEntries(): number;
  /** Lookups the miss budget allows now, for keys the key filter does not hold. */
  keyMissBudget(): number;
  /** Redis is configured but unreachable: limits are counted per gateway (each ÷ live gateways). */
  limitsDegraded(): boolean;
  /** Circuit breakers (agent × model) that are open or half-open now. */
  breakerStates?(): { open: number; halfOpen: number };
}

const gateways = new Set<GatewayGaugeSources>();
const sum = (f: (s: GatewayGaugeSources) => number) => {
  let n = 0;
  for (const s of gateways) n += f(s);
  return n;
};

function gauge(name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

function counterFrom(name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

gauge("wellspring_agents_connected", "Agents with an authenticated tunnel to this gateway.", () => sum((s) => s.agentsConnected()));
gauge("wellspring_streams_open", "Streams open across all tunnels.", () => sum((s) => s.streamsOpen()));
gauge("wellspring_tunnel_held_response_bytes", "Response bytes received from agents and not yet taken by clients.", () => sum((s) => s.heldResponseBytes()));
gauge("wellspring_tunnel_buffered_bytes", "Bytes queued on tunnel sockets.", () => sum((s) => s.bufferedBytes()));
gauge("wellspring_credit_leases_open", "Wallet slices this gateway holds for running and recent requests.", () => sum((s) => s.creditLeasesOpen()));
gauge(
  "wellspring_limits_degraded",
  "Gateways of this process counting limits locally because Redis is unreachable (each limit ÷ live gateways); 0 when limits are shared or Redis is not configured.",
  () => sum((s) => (s.limitsDegraded() ? 1 : 0)),
);
gauge("wellspring_ledger_up", "Whether the ledger (PostgreSQL) answered this gateway's last call (1) or not (0).", () =>
  gateways.size > 0 && [...gateways].every((s) => s.ledgerUp()) ? 1 : 0,
);
gauge("wellspring_ready", "Whether this gateway is ready (1: the ledger answers and the tunnel listener is listening), as /readyz says.", () =>
  gateways.size > 0 && [...gateways].every((s) => s.ledgerUp() && s.tunnelListening()) ? 1 : 0,
);
gauge("wellspring_spool_settlements", "Settlements waiting in the local spool for the database (spool depth).", () => sum((s) => s.spooledSettlements()));
gauge("wellspring_spool_records", "Request records waiting in the local spool for the database (spool depth).", () => sum((s) => s.spooledRecords()));
gauge("wellspring_key_filter_entries", "Keys the key filter holds (active at its last rebuild, plus created since).", () => sum((s) => s.keyFilterEntries()));
gauge(
  "wellspring_key_miss_budget_lookups",
  "Database lookups the miss budget allows now for well-formed keys the key filter does not hold (0 while unknown keys flood the gateway).",
  () => sum((s) => s.keyMissBudget()),
);
new Gauge({
  name: "wellspring_breakers",
  help: "Circuit breakers (agent × model) by state: open (no traffic) or half_open (one probe allowed).",
  labelNames: ["state"] as const,
  registers: [registry],
  collect() {
    this.set(
      { state: "open" },
      sum((s) => s.breakerStates?.().open ?? 0),
    );
    this.set(
      { state: "half_open" },
      sum((s) => s.breakerStates?.().halfOpen ?? 0),
    );
  },
});
counterFrom("wellspring_tunnel_streams_total", "Streams the gateway opened on agent tunnels (OPEN frames sent).", () => tunnelCounters.framesOut[1] ?? 0);
counterFrom("wellspring_records_dropped_total", "Request records dropped because the write queue was full.", () => sum((s) => s.recordsDropped()));
counterFrom("wellspring_key_db_queries_total", "Database queries made to verify virtual keys.", () => sum((s) => s.keyChecks().queries));
counterFrom("wellspring_key_filter_stale_total", "Active keys the key filter did not hold yet (their creation event had not arrived).", () =>
  sum((s) => s.keyChecks().filterStale),
);
new Counter({
  name: "wellspring_key_checks_total",
  help: "Virtual key checks by how they were answered: cache; lookup (the key filter holds the key); miss_lookup (it does not, looked up from the miss budget); miss_refused (it does not and the budget was spent: no lookup); stale (the database was unreachable: the key's last active answer, within its bound).",
  labelNames: ["path"] as const,
  registers: [registry],
  collect() {
    this.reset();
    this.inc(
      { path: "cache" },
      sum((s) => s.keyChecks().cache),
    );
    this.inc(
      { path: "lookup" },
      sum((s) => s.keyChecks().lookups),
    );
    this.inc(
      { path: "miss_lookup" },
      sum((s) => s.keyChecks().missLookups),
    );
    this.inc(
      { path: "miss_refused" },
      sum((s) => s.keyChecks().missRefused),
    );
    this.inc(
      { path: "stale" },
      sum((s) => s.keyChecks().staleServed),
    );
  },
});

let processMetrics = false;

/**
 * Makes a running gateway's state part of the gauges (and starts the standard process metrics on first use:
 * CPU, memory, event-loop lag, heap, handles). Returns the function that removes it again (on close).
 */
export function attachGateway(sources: GatewayGaugeSources): () => void {
  if (!processMetrics) {
    processMetrics = true;
    collectDefaultMetrics({ register: registry });
  }
  gateways.add(sources);
  return () => gateways.delete(sources);
}

/** The Prometheus text exposition of every metric of this process. */
export function metricsText(): Promise<string> {
  return registry.metrics();
}

export const METRICS_CONTENT_TYPE = registry.contentType;

const modelLabels = new Set<string>();

/** `model` as a label value: itself while fewer than MODEL_LABELS_MAX models were seen, else `other`. */
function modelLabel(model: string | null): string {
  if (model === null) return "none";
  if (modelLabels.has(model)) return model;
  if (modelLabels.size >= MODEL_LABELS_MAX) return "other";
  modelLabels.add(model);
  return model;
}

export interface RequestEnd {
  route: string;
  /** The model, when an agent was chosen for the request (so only models some agent offers become labels). */
  model: string | null;
  status: number;
  endCause: string;
  streamed: boolean;
  durationMs: number;
  /** Time to the response head, ms; null when none arrived. */
  firstByteMs: number | null;
}

/** One proxied request ended (called once per request, where its record is written). */
export function observeRequestEnd(r: RequestEnd): void {
  const model = modelLabel(r.model);
  const statusClass = r.status >= 100 && r.status < 600 ? `${Math.floor(r.status / 100)}xx` : "none";
  requestDuration.observe({ route: r.route, model, status_class: statusClass }, r.durationMs / 1000);
  if (r.firstByteMs !== null) requestTtfb.observe({ route: r.route, model }, r.firstByteMs / 1000);
  requestsTotal.inc({ route: r.route, end_cause: r.endCause, streamed: r.streamed ? "true" : "false" });
}

/** A rate limiter allowed or refused a call. */
export function observeLimiter(limiter: "free_routes" | "admin_auth" | "limits", decision: "allowed" | "refused"): void {
  limiterDecisions.inc({ limiter, decision });
}

export type BillingDecision = "held" | "grown" | "insufficient_quota" | "ledger_unavailable" | "unpriced";

/** What billing decided for a request before dispatch (or as its body grew). */
export function observeBilling(decision: BillingDecision): void {
  billingDecisions.inc({ decision });
}

/** One settlement statement was sent with `size` settlements. */
export function observeSettlementBatch(size: number): void {
  settlementBatchSize.observe(size);
}

/** The archive job moved `rows` rows of `table` out of the database. */
export function observeArchived(table: string, rows: number): void {
  archiveRows.inc({ table }, rows);
}

export type RoutingAttemptResult = "served" | "failed_over" | "failed";

/** One attempt of a request on an agent ended. */
export function observeRoutingAttempt(result: RoutingAttemptResult): void {
  routingAttempts.inc({ result });
}

/** A circuit breaker entered a state. */
export function observeBreakerChange(to: "open" | "half_open" | "closed"): void {
  breakerTransitions.inc({ to });
}

/**
 * In a worker of several gateway processes (cluster.ts): every series carries `worker="<slot>"`, and the
 * primary's `/metrics` gathers this registry over the cluster channel.
 */
export function labelWorker(slot: number): void {
  registry.setDefaultLabels({ worker: String(slot) });
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs prom-client's answer to the primary's requests (there is no other way to do it).
  new AggregatorRegistry();
}
