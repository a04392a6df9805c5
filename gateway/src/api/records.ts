/**
 * Per-request records, written in batches off the request path. Never content: sizes, timings, ids. A settled
 * request's record goes with its settlement, in the same statement (`Ledger.settleMany`); this writer takes the
 * others (billing off, free routes, requests refused before anything was held).
 *
 * One INSERT … SELECT FROM unnest(…) per batch through node-postgres: the ORM's per-call query planning ran
 * on the event loop and stalled proxied requests around each flush (p99 +30 ms in the S1 benchmark). A batch
 * the database cannot take now goes to the durable spool and is written when it is back (inserts are keyed by
 * the request id, so a replay never duplicates a record).
 */
import type pg from "pg";
import type { Logger } from "../log.ts";
import { isUnavailable } from "../billing/health.ts";
import type { Spool, SpoolCodec } from "../billing/spool.ts";

import type { EndCause } from "../billing/usage.ts";

export type { EndCause };

export interface RequestRecordInput {
  id: string;
  userId: string;
  keyId: string;
  agentId: string | null;
  gatewayId: string;
  route: string;
  provider: string;
  model: string | null;
  streamed: boolean;
  httpStatus: number;
  endCause: EndCause;
  bytesIn: number;
  bytesOut: number;
  startedAt: Date;
  firstByteMs: number | null;
  durationMs: number;
  inputTokens: number | null;
  outputTokens: number | null;
  cachedInputTokens: number | null;
  usageEstimated: boolean;
  priceVer: number | null;
  tier: "S" | "A" | "discount" | null;
  tierBps: number | null;
  userChargeMicros: bigint | null;
  ownerEarningMicros: bigint | null;
}

/** Records waiting for their batch; past this many, new records are dropped and counted. */
export const RECORD_QUEUE_ENTRIES_MAX = 100_000;
const FLUSH_INTERVAL_MS = 200;
const INSERT_SQL = `INSERT INTO request_records
  (id, user_id, key_id, agent_id, gateway_id, route, provider, model, streamed, http_status, end_cause,
   bytes_in, bytes_out, started_at, first_byte_ms, duration_ms, input_tokens, output_tokens, cached_input_tokens,
   usage_estimated, price_ver, tier, tier_bps, user_charge_micros, owner_earning_micros)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
  $8::text[], $9::bool[], $10::int[], $11::"EndCause"[], $12::bigint[], $13::bigint[], $14::timestamptz[],
  $15::int[], $16::int[], $17::int[], $18::int[], $19::int[], $20::bool[], $21::int[], $22::"AgentTier"[],
  $23::int[], $24::bigint[], $25::bigint[])
ON CONFLICT (id, started_at) DO NOTHING`;
const BATCH_ENTRIES_MAX = 500;

/** How often spooled records are tried again while the spool is not empty, ms. */
const SPOOL_REPLAY_INTERVAL_MS = 2_000;

export class RecordWriter {
  #queue: RequestRecordInput[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #flushing: Promise<void> | null = null;
  #replaying = false;
  readonly #replayTimer: ReturnType<typeof setInterval> | null;
  dropped = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly spool: Spool<RequestRecordInput> | null = null,
  ) {
    this.#replayTimer = spool ? setInterval(() => void this.#replay(), SPOOL_REPLAY_INTERVAL_MS) : null;
    this.#replayTimer?.unref();
  }

  /** Records waiting in the spool. */
  get spooled(): number {
    return this.spool?.depth ?? 0;
  }

  add(record: RequestRecordInput): void {
    if (this.#queue.length >= RECORD_QUEUE_ENTRIES_MAX) {
      this.dropped++;
      return;
    }
    this.#queue.push(record);
    this.#timer ??= setTimeout(() => void this.flush(), FLUSH_INTERVAL_MS);
  }

  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    while (this.#flushing) await this.#flushing;
    if (this.#queue.length === 0) return;
    const batch = this.#queue.splice(0, BATCH_ENTRIES_MAX);
    this.#flushing = this.#insert(batch)
      .then(
        () => undefined,
        async (error: unknown) => {
          if (this.spool && isUnavailable(error)) {
            await this.spool.append(batch).catch((e: unknown) => this.log.error("records.spool_failed", { count: batch.length, error: e }));
            return;
          }
          this.log.error("records.write_failed", { count: batch.length, error });
        },
      )
      .finally(() => {
        this.#flushing = null;
      });
    await this.#flushing;
    if (this.#queue.length > 0) await this.flush();
  }

  async #replay(): Promise<void> {
    const spool = this.spool;
    if (!spool || spool.depth === 0 || this.#replaying) return;
    this.#replaying = true;
    try {
      while (spool.depth > 0) {
        const batch = spool.items().slice(0, BATCH_ENTRIES_MAX);
        await this.#insert(batch);
        const done = new Set(batch);
        await spool.remove((r) => done.has(r));
      }
    } catch (error) {
      if (!isUnavailable(error)) this.log.warn("records.replay_failed", { error });
    } finally {
      this.#replaying = false;
    }
  }

  /** Stops replaying (on shutdown, after the last flush). */
  close(): void {
    if (this.#replayTimer) clearInterval(this.#replayTimer);
  }

  #insert(batch: RequestRecordInput[]): Promise<unknown> {
    return this.pool.query(INSERT_SQL, [
      batch.map((r) => r.id),
      batch.map((r) => r.userId),
      batch.map((r) => r.keyId),
      batch.map((r) => r.agentId),
      batch.map((r) => r.gatewayId),
      batch.map((r) => r.route),
      batch.map((r) => r.provider),
      batch.map((r) => r.model),
      batch.map((r) => r.streamed),
      batch.map((r) => r.httpStatus),
      batch.map((r) => r.endCause),
      batch.map((r) => String(r.bytesIn)),
      batch.map((r) => String(r.bytesOut)),
      batch.map((r) => r.startedAt.toISOString()),
      batch.map((r) => r.firstByteMs),
      batch.map((r) => r.durationMs),
      batch.map((r) => r.inputTokens),
      batch.map((r) => r.outputTokens),
      batch.map((r) => r.cachedInputTokens),
      batch.map((r) => r.usageEstimated),
      batch.map((r) => r.priceVer),
      batch.map((r) => r.tier),
      batch.map((r) => r.tierBps),
      batch.map((r) => (r.userChargeMicros === null ? null : String(r.userChargeMicros))),
      batch.map((r) => (r.ownerEarningMicros === null ? null : String(r.ownerEarningMicros))),
    ]);
  }
}

/**
 * A record as its row in `request_records` (JSON, column names as keys, bigints as decimal strings, times as
 * ISO-8601 UTC): what the hub seals into the agent's receipt, and what a rebuild inserts with
 * `json_populate_record` (gateway/src/ledger/hub_record.ts).
 */
export function recordRowJson(r: RequestRecordInput): string {
  return JSON.stringify({
    id: r.id,
    user_id: r.userId,
    key_id: r.keyId,
    agent_id: r.agentId,
    gateway_id: r.gatewayId,
    route: r.route,
    provider: r.provider,
    model: r.model,
    streamed: r.streamed,
    http_status: r.httpStatus,
    end_cause: r.endCause,
    bytes_in: String(r.bytesIn),
    bytes_out: String(r.bytesOut),
    started_at: r.startedAt.toISOString(),
    first_byte_ms: r.firstByteMs,
    duration_ms: r.durationMs,
    input_tokens: r.inputTokens,
    output_tokens: r.outputTokens,
    cached_input_tokens: r.cachedInputTokens,
    usage_estimated: r.usageEstimated,
    price_ver: r.priceVer,
    tier: r.tier,
    tier_bps: r.tierBps,
    user_charge_micros: r.userChargeMicros === null ? null : String(r.userChargeMicros),
    owner_earning_micros: r.ownerEarningMicros === null ? null : String(r.ownerEarningMicros),
  });
}

const bigOrNull = (v: unknown): bigint | null => (typeof v === "string" && /^-?\d{1,20}$/.test(v) ? BigInt(v) : null);

/** Request records as spool lines: bigints as decimal strings, the start time as ISO-8601 (UTC). */
export const RECORD_CODEC: SpoolCodec<RequestRecordInput> = {
  encode: (r) => ({
    ...r,
    startedAt: r.startedAt.toISOString(),
    userChargeMicros: r.userChargeMicros === null ? null : r.userChargeMicros.toString(),
    ownerEarningMicros: r.ownerEarningMicros === null ? null : r.ownerEarningMicros.toString(),
  }),
  decode: (raw) => {
    const r = raw as Record<string, unknown>;
    if (typeof r.id !== "string" || typeof r.userId !== "string" || typeof r.startedAt !== "string") return null;
    return {
      ...(r as unknown as RequestRecordInput),
      startedAt: new Date(r.startedAt),
      userChargeMicros: bigOrNull(r.userChargeMicros),
      ownerEarningMicros: bigOrNull(r.ownerEarningMicros),
    };
  },
};
