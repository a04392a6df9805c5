/** Gateway configuration, parsed once from the environment. Optional features return null when unset. */
import { z } from "zod";
import { AUTH_TIMEOUT_MS, PRESENCE_PROBE_TIMEOUT_MS_DEFAULT } from "@wellspring/protocol";
import { leaseOptionsProblem, type LeaseOptions } from "./billing/leases.ts";
import type { DeferredOptions } from "./billing/deferred.ts";
import { CHAIN_TAIL_INTERVAL_MS_DEFAULT, DEFAULT_LIMITER_SETTINGS, type GatewayOptions } from "./server.ts";
import { DEFAULT_PROXY_LIMITS } from "./api/proxy.ts";
import { ADMIN_AUTH_DEFAULTS } from "./api/admin.ts";
import { KEY_FILTER_MISS_LOOKUPS_PER_S_DEFAULT } from "./api/keys.ts";
import { KEY_FILTER_REBUILD_INTERVAL_MS_DEFAULT } from "./api/key_filter.ts";
import { ARCHIVE_AFTER_DAYS_DEFAULT, ARCHIVE_AFTER_DAYS_MIN, ARCHIVE_BATCH_ROWS_DEFAULT, ARCHIVE_PART_ROWS_DEFAULT } from "./archive/archiver.ts";
import { archiveConfigFromEnv } from "./archive/config.ts";
import { DEFAULT_BREAKER_OPTIONS, DEFAULT_FAILOVER_LIMITS } from "./routing/mod.ts";
import { EGRESS_OWNERS_PER_ADDRESS_MAX_DEFAULT } from "./risk/egress.ts";
import { CANARY_FIRST_DELAY_MS_MAX_DEFAULT, CANARY_INTERVAL_MS_DEFAULT, CANARY_TICK_MS_DEFAULT, CANARY_TIMEOUT_MS_DEFAULT } from "./risk/canary.ts";
import { LINKED_EARNINGS_MODE_DEFAULT, LINKED_EARNINGS_MODES } from "./risk/linked_accounts.ts";
import { AGENT_PROBATION_HOURS_DEFAULT, AGENT_PROBATION_HOURS_MAX } from "./risk/probation.ts";

const int = (def: number) => z.coerce.number().int().nonnegative().default(def);
const positive = (def: number) => z.coerce.number().int().positive().default(def);

/** An origin agents can dial: `https://host[:port]`, nothing else (no path, query or credentials). */
const agentUrl = z.string().transform((v, ctx) => {
  let u: URL | null = null;
  try {
    u = new URL(v);
  } catch {
    /* reported below */
  }
  if (!u || u.protocol !== "https:" || u.username || u.password || u.search || u.hash || (u.pathname !== "/" && u.pathname !== "")) {
    ctx.addIssue({ code: "custom", message: "must be an https origin such as https://hub.example.com:8788 (no path, query or credentials)" });
    return z.NEVER;
  }
  return u.origin;
});

const schema = z.object({
  HOST: z.string().default("127.0.0.1"),
  GATEWAY_PORT: int(8787),
  AGENT_PORT: int(8788),
  ADMIN_HOST: z.string().default("127.0.0.1"),
  ADMIN_PORT: int(8789),
  /**
   * Gateway processes on this machine (gateway/src/cluster.ts): 1 (default) is one process; n > 1 or `auto` (one per
   * core) forks that many workers that share the API and agent ports. Several need REDIS_URL (limits add up there).
   */
  GATEWAY_PROCESSES: z
    .string()
    .regex(/^(auto|[1-9][0-9]{0,2})$/, "must be a whole number from 1 or auto")
    .default("1"),
  /** With several processes: worker n takes forwarded requests from other gateways on PEER_PORT + n (0: a free port each). */
  PEER_PORT: int(0).pipe(z.number().max(65_535)),
  AGENT_PUBLIC_URL: agentUrl.optional(),
  /** The origin of this gateway's own agent listener as the other gateways reach it (not a load balancer's). */
  PEER_PUBLIC_URL: agentUrl.optional(),
  DATABASE_URL: z.string().url().optional(),
  REDIS_URL: z.string().url().optional(),
  DATA_DIR: z.string().default(".data"),
  HUB_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{3,64}$/)
    .optional(),
  GATEWAY_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{3,64}$/)
    .optional(),
  TLS_CERT_FILE: z.string().optional(),
  TLS_KEY_FILE: z.string().optional(),
  REQUEST_BODY_BYTES_MAX: int(32 * 1024 * 1024),
  /** Largest file upload (`POST /v1/files`), bytes: OpenAI's own limit, 512 MB, by default. */
  FILE_UPLOAD_BYTES_MAX: positive(DEFAULT_PROXY_LIMITS.fileUploadBytesMax),
  /** Largest Message Batch create body (`POST /v1/messages/batches`), bytes: Anthropic's own limit, 256 MB, by default. */
  MESSAGE_BATCH_BODY_BYTES_MAX: positive(DEFAULT_PROXY_LIMITS.messageBatchBodyBytesMax),
  RESPONSE_HEAD_TIMEOUT_MS: int(600_000),
  STREAM_IDLE_TIMEOUT_MS: int(300_000),
  /** A request body silent this long before it is wholly sent upstream is answered 408 (slow senders hold nothing). */
  REQUEST_BODY_IDLE_TIMEOUT_MS: positive(DEFAULT_PROXY_LIMITS.requestBodyIdleTimeoutMs),
  /** Prefix of every Redis key of the limits (several hubs may share one Redis); no braces (they are Cluster hash tags). */
  LIMITS_REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{0,64}$/, "letters, digits and _ . : - only")
    .default(DEFAULT_LIMITER_SETTINGS.redisPrefix),
  LIMITS_REDIS_TIMEOUT_MS: positive(DEFAULT_LIMITER_SETTINGS.redisCommandTimeoutMs),
  /** Requests one user may have in flight at once across all keys and gateways; 0 = no limit. */
  LIMITS_USER_CONCURRENCY_MAX: int(DEFAULT_LIMITER_SETTINGS.userConcurrencyMax),
  LIMITS_SLICE_FRACTION: z.coerce.number().min(0).max(0.01).default(DEFAULT_LIMITER_SETTINGS.sliceFraction),
  LIMITS_SLICE_IDLE_MS: positive(DEFAULT_LIMITER_SETTINGS.sliceIdleMs),
  LIMITS_SLOT_HOLD_MS: positive(DEFAULT_LIMITER_SETTINGS.slotHoldMs),
  ROUTING_ATTEMPTS_MAX: positive(DEFAULT_FAILOVER_LIMITS.attemptsMax),
  ROUTING_FAILOVER_WINDOW_MS: int(DEFAULT_FAILOVER_LIMITS.windowMs),
  ROUTING_FAILOVER_BODY_BYTES_MAX: int(DEFAULT_FAILOVER_LIMITS.bodyBytesMax),
  ROUTING_BREAKER_FAILURES: positive(DEFAULT_BREAKER_OPTIONS.failuresToOpen),
  ROUTING_BREAKER_WINDOW_MS: positive(DEFAULT_BREAKER_OPTIONS.failureWindowMs),
  ROUTING_BREAKER_OPEN_MS: positive(DEFAULT_BREAKER_OPTIONS.openMs),
  ROUTING_BREAKER_PROBE_TIMEOUT_MS: positive(DEFAULT_BREAKER_OPTIONS.probeTimeoutMs),
  TUNNEL_HEARTBEAT_INTERVAL_MS: int(15_000),
  TUNNEL_HEARTBEAT_TIMEOUT_MS: int(45_000),
  /** A live session must answer a ping this fast to keep its agent from a second connection; below AUTH_TIMEOUT_MS. */
  TUNNEL_PRESENCE_PROBE_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(1)
    .max(AUTH_TIMEOUT_MS - 1_000)
    .default(PRESENCE_PROBE_TIMEOUT_MS_DEFAULT),
  BILLING_ENABLED: z.enum(["0", "1", "false", "true"]).default("1"),
  /** Owner accounts that may share one agent egress address (gateway/src/risk/egress.ts) before each further one is flagged. */
  EGRESS_OWNERS_PER_ADDRESS_MAX: int(EGRESS_OWNERS_PER_ADDRESS_MAX_DEFAULT),
  /** Quality canaries (gateway/src/risk/canary.ts): how often each agent × chat model is canaried, ms (±10 % jitter); 0 = off. */
  CANARY_INTERVAL_MS: int(CANARY_INTERVAL_MS_DEFAULT),
  /** An agent × model never canaried gets its first canary within this long of being seen, ms. */
  CANARY_FIRST_DELAY_MS_MAX: int(CANARY_FIRST_DELAY_MS_MAX_DEFAULT),
  /** How often each gateway looks for canaries due, ms. */
  CANARY_TICK_MS: positive(CANARY_TICK_MS_DEFAULT),
  /** Longest a canary waits for its whole answer, ms. */
  CANARY_TIMEOUT_MS: positive(CANARY_TIMEOUT_MS_DEFAULT),
  /** A request between linked accounts (gateway/src/risk/linked_accounts.ts): `hold` its earning for review, or only `flag` it. */
  RISK_LINKED_EARNINGS: z.enum(LINKED_EARNINGS_MODES).default(LINKED_EARNINGS_MODE_DEFAULT),
  /** New agents' probation (gateway/src/risk/probation.ts), whole hours; 0 = none. */
  AGENT_PROBATION_HOURS: int(AGENT_PROBATION_HOURS_DEFAULT).pipe(z.number().max(AGENT_PROBATION_HOURS_MAX)),
  /** Development mode: admit agents whose provider calls go to a development upstream (tests, the demo). Off by default. */
  HUB_DEVELOPMENT: z.enum(["0", "1", "false", "true"]).default("0"),
  BILLING_DEFAULT_MAX_OUTPUT_TOKENS: int(32_768),
  BILLING_LEASE_SLICE_MICROS: int(1_000_000),
  BILLING_LEASE_IDLE_RELEASE_MS: int(2_000),
  BILLING_LEASE_RENEW_INTERVAL_MS: int(5_000),
  BILLING_LEASE_VALID_MS: int(15_000),
  BILLING_GATEWAY_DEAD_AFTER_MS: int(30_000),
  /** Background responses: first poll after the create call, the backoff's cap, the age limit (docs/billing.md). */
  BILLING_DEFERRED_FIRST_POLL_MS: int(2_000),
  BILLING_DEFERRED_POLL_MAX_MS: int(60_000),
  BILLING_DEFERRED_MAX_AGE_MS: int(86_400_000),
  ADMIN_TOKEN: z.string().min(16).optional(),
  ADMIN_AUTH_FAILURES_MAX: positive(ADMIN_AUTH_DEFAULTS.failuresMax),
  ADMIN_AUTH_WINDOW_MS: positive(ADMIN_AUTH_DEFAULTS.windowMs),
  ADMIN_AUTH_BLOCK_MS: positive(ADMIN_AUTH_DEFAULTS.blockMs),
  KEY_FILTER_MISS_LOOKUPS_PER_S: positive(KEY_FILTER_MISS_LOOKUPS_PER_S_DEFAULT),
  KEY_FILTER_REBUILD_INTERVAL_MS: positive(KEY_FILTER_REBUILD_INTERVAL_MS_DEFAULT),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
  /** How often each connected agent's receipt chain tail is compared and its unreceipted settlements offered again, ms. */
  LEDGER_TAIL_INTERVAL_MS: positive(CHAIN_TAIL_INTERVAL_MS_DEFAULT),
  /** Hot data: days kept in PostgreSQL before the archive job moves them to the archive store. */
  ARCHIVE_AFTER_DAYS: z.coerce.number().int().min(ARCHIVE_AFTER_DAYS_MIN).default(ARCHIVE_AFTER_DAYS_DEFAULT),
  ARCHIVE_INTERVAL_MS: int(3_600_000),
  ARCHIVE_PART_ROWS: positive(ARCHIVE_PART_ROWS_DEFAULT),
  ARCHIVE_BATCH_ROWS: positive(ARCHIVE_BATCH_ROWS_DEFAULT),
  ARCHIVE_DIR: z.string().optional(),
  ARCHIVE_S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be an S3 bucket name")
    .optional(),
  ARCHIVE_S3_ENDPOINT: z.string().url().optional(),
  ARCHIVE_S3_REGION: z.string().default("us-east-1"),
  ARCHIVE_S3_PREFIX: z
    .string()
    .regex(/^([a-z0-9_][a-z0-9_.-]*\/)*$/, "must be empty or end with /")
    .default(""),
  ARCHIVE_S3_ACCESS_KEY_ID: z.string().optional(),
  ARCHIVE_S3_SECRET_ACCESS_KEY: z.string().optional(),
  ARCHIVE_S3_FORCE_PATH_STYLE: z.enum(["0", "1", "false", "true"]).optional(),
});

export type GatewayEnv = z.infer<typeof schema>;

/** The gateway's billing options from the environment, or null when billing is off. */
export function billingFromEnv(env: GatewayEnv): { defaultMaxOutputTokens: number; leases: LeaseOptions; deferred: Partial<DeferredOptions> } | null {
  if (env.BILLING_ENABLED !== "1" && env.BILLING_ENABLED !== "true") return null;
  return {
    defaultMaxOutputTokens: env.BILLING_DEFAULT_MAX_OUTPUT_TOKENS,
    leases: {
      sliceMicros: BigInt(env.BILLING_LEASE_SLICE_MICROS),
      idleReleaseMs: env.BILLING_LEASE_IDLE_RELEASE_MS,
      renewIntervalMs: env.BILLING_LEASE_RENEW_INTERVAL_MS,
      validForMs: env.BILLING_LEASE_VALID_MS,
      gatewayDeadAfterMs: env.BILLING_GATEWAY_DEAD_AFTER_MS,
    },
    deferred: {
      firstPollMs: env.BILLING_DEFERRED_FIRST_POLL_MS,
      pollMaxMs: env.BILLING_DEFERRED_POLL_MAX_MS,
      maxAgeMs: env.BILLING_DEFERRED_MAX_AGE_MS,
      tickMs: Math.min(1_000, env.BILLING_DEFERRED_FIRST_POLL_MS),
    },
  };
}

/** The gateway's options that come from the environment (main, `npm start` and the demo start it alike). */
export function gatewayOptionsFromEnv(env: GatewayEnv): Omit<GatewayOptions, "db" | "databaseUrl" | "log" | "hubId" | "gatewayId" | "tls" | "spoolDir"> {
  return {
    archive: archiveConfigFromEnv(env),
    host: env.HOST,
    apiPort: env.GATEWAY_PORT,
    agentPort: env.AGENT_PORT,
    adminHost: env.ADMIN_HOST,
    adminPort: env.ADMIN_PORT,
    agentPublicUrl: env.AGENT_PUBLIC_URL,
    peerPublicUrl: env.PEER_PUBLIC_URL,
    limits: {
      requestBodyBytesMax: env.REQUEST_BODY_BYTES_MAX,
      responseHeadTimeoutMs: env.RESPONSE_HEAD_TIMEOUT_MS,
      streamIdleTimeoutMs: env.STREAM_IDLE_TIMEOUT_MS,
      requestBodyIdleTimeoutMs: env.REQUEST_BODY_IDLE_TIMEOUT_MS,
      fileUploadBytesMax: env.FILE_UPLOAD_BYTES_MAX,
      messageBatchBodyBytesMax: env.MESSAGE_BATCH_BODY_BYTES_MAX,
    },
    redisUrl: env.REDIS_URL ?? null,
    limiter: {
      redisPrefix: env.LIMITS_REDIS_PREFIX,
      redisCommandTimeoutMs: env.LIMITS_REDIS_TIMEOUT_MS,
      userConcurrencyMax: env.LIMITS_USER_CONCURRENCY_MAX,
      sliceFraction: env.LIMITS_SLICE_FRACTION,
      sliceIdleMs: env.LIMITS_SLICE_IDLE_MS,
      slotHoldMs: env.LIMITS_SLOT_HOLD_MS,
    },
    billing: billingFromEnv(env),
    routing: {
      failover: { attemptsMax: env.ROUTING_ATTEMPTS_MAX, windowMs: env.ROUTING_FAILOVER_WINDOW_MS, bodyBytesMax: env.ROUTING_FAILOVER_BODY_BYTES_MAX },
      breaker: {
        failuresToOpen: env.ROUTING_BREAKER_FAILURES,
        failureWindowMs: env.ROUTING_BREAKER_WINDOW_MS,
        openMs: env.ROUTING_BREAKER_OPEN_MS,
        probeTimeoutMs: env.ROUTING_BREAKER_PROBE_TIMEOUT_MS,
      },
      probationMs: env.AGENT_PROBATION_HOURS * 3_600_000,
    },
    adminToken: env.ADMIN_TOKEN,
    egressOwnersPerAddressMax: env.EGRESS_OWNERS_PER_ADDRESS_MAX,
    canaries: {
      intervalMs: env.CANARY_INTERVAL_MS,
      firstDelayMsMax: env.CANARY_FIRST_DELAY_MS_MAX,
      tickMs: env.CANARY_TICK_MS,
      timeoutMs: env.CANARY_TIMEOUT_MS,
    },
    linkedEarnings: env.RISK_LINKED_EARNINGS,
    adminAuth: { failuresMax: env.ADMIN_AUTH_FAILURES_MAX, windowMs: env.ADMIN_AUTH_WINDOW_MS, blockMs: env.ADMIN_AUTH_BLOCK_MS },
    chainTailIntervalMs: env.LEDGER_TAIL_INTERVAL_MS,
    keyFilter: { missLookupsPerSecond: env.KEY_FILTER_MISS_LOOKUPS_PER_S, rebuildIntervalMs: env.KEY_FILTER_REBUILD_INTERVAL_MS },
    tunnel: {
      heartbeatIntervalMs: env.TUNNEL_HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs: env.TUNNEL_HEARTBEAT_TIMEOUT_MS,
      presenceProbeTimeoutMs: env.TUNNEL_PRESENCE_PROBE_TIMEOUT_MS,
      developmentAgentsAllowed: env.HUB_DEVELOPMENT === "1" || env.HUB_DEVELOPMENT === "true",
    },
  };
}

export function parseEnv(env: NodeJS.ProcessEnv = process.env): GatewayEnv {
  // An empty variable means unset (e.g. `DATABASE_URL=` selects the embedded database).
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new Error(`Cannot start the gateway: invalid configuration (${problems})`);
  }
  const leases = billingFromEnv(parsed.data)?.leases;
  const leaseProblem = leases ? leaseOptionsProblem(leases) : null;
  if (leaseProblem)
    throw new Error(
      `Cannot start the gateway: invalid configuration (${leaseProblem}: BILLING_LEASE_RENEW_INTERVAL_MS < BILLING_LEASE_VALID_MS < BILLING_GATEWAY_DEAD_AFTER_MS)`,
    );
  if (Boolean(parsed.data.TLS_CERT_FILE) !== Boolean(parsed.data.TLS_KEY_FILE)) {
    throw new Error("Cannot start the gateway: set both TLS_CERT_FILE and TLS_KEY_FILE, or neither");
  }
  return parsed.data;
}
