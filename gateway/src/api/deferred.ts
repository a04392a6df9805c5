/**
 * The poller of background responses' deferred settlements (docs/billing.md, "Background responses"; the money
 * rules are `billing/deferred.ts`): hands a create call's hold over to a `held` reservation and a
 * `deferred_settlements` row, polls the response through the agent that made it until it ends, and settles once.
 */
import type pg from "pg";
import { newId } from "@wellspring/db/core";
import { ResetCode, type RequestHead } from "@wellspring/protocol";
import type { Logger } from "../log.ts";
import type { AgentLink } from "../tunnel/hub_stream.ts";
import type { HubRecordSealer } from "../ledger/hub_record.ts";
import { RECORD_CODEC, recordRowJson, type RecordWriter, type RequestRecordInput } from "./records.ts";
import {
  cappedUsage,
  DEFAULT_DEFERRED_OPTIONS,
  DEFERRED_CLAIM_BATCH_MAX,
  DEFERRED_RESPONSE_BYTES_MAX,
  deferredCharge,
  endCauseOf,
  TERMINAL_STATUSES,
  type DeferredHold,
  type DeferredOptions,
  type DeferredPricing,
} from "../billing/deferred.ts";
import { settlementStatement } from "../billing/statement.ts";
import type { EndCause, Usage } from "../billing/usage.ts";

/** A row as the poller reads it. */
interface Row {
  request_id: string;
  user_id: string;
  agent_id: string;
  owner_id: string | null;
  model: string;
  response_id: string;
  held_micros: string;
  pricing: DeferredPricing;
  worst_input_tokens: number;
  worst_output_tokens: number;
  record: unknown;
  attempts: number;
  created_at: Date;
}

/** One poll's result: the terminal object, still running, the response gone (404), or no answer. */
type PollResult =
  | { kind: "terminal"; status: string; response: Record<string, unknown> }
  | { kind: "running"; status: string }
  | { kind: "gone" }
  | { kind: "no_answer"; why: string };

export interface DeferredDeps {
  pool: pg.Pool;
  log: Logger;
  /** This gateway's connection to an agent, if it holds one (rows are polled only where their agent is). */
  localAgent(agentId: string): AgentLink | undefined;
  /** Agents whose connections this gateway holds now. */
  localAgentIds(): string[];
  records: RecordWriter;
  sealer: HubRecordSealer | null;
  options?: Partial<DeferredOptions>;
}

export class DeferredSettlements {
  readonly options: DeferredOptions;
  #timer: ReturnType<typeof setInterval> | null = null;
  #ticking: Promise<number> | null = null;
  #closed = false;

  constructor(private readonly deps: DeferredDeps) {
    this.options = { ...DEFAULT_DEFERRED_OPTIONS, ...deps.options };
  }

  /**
   * The create call ended with the response still running: the hold moves to a reservation of its own and the row
   * is written, in one transaction. Resolves once both are durable.
   */
  async defer(hold: DeferredHold, responseId: string, record: RequestRecordInput): Promise<void> {
    const c = await this.deps.pool.connect();
    try {
      await c.query("BEGIN");
      const p = hold.pricing;
      const r = await c.query<{ held: string }>("SELECT wellspring_defer_hold($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)::text AS held", [
        hold.requestId,
        hold.leaseId,
        hold.userId,
        hold.reservedMicros.toString(),
        p.priceVer,
        p.planId,
        p.api,
        hold.model,
        hold.agentId,
        hold.ownerId,
        p.tier,
        p.tierBps,
      ]);
      await c.query(
        `INSERT INTO deferred_settlements (request_id, user_id, agent_id, owner_id, model, response_id, held_micros, pricing, worst_input_tokens,
           worst_output_tokens, record, next_poll_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now() + make_interval(secs => $12::double precision / 1000))
         ON CONFLICT (request_id) DO NOTHING`,
        [
          hold.requestId,
          hold.userId,
          hold.agentId,
          hold.ownerId,
          hold.model,
          responseId,
          r.rows[0]!.held,
          JSON.stringify(p),
          hold.worst.inputTokens,
          hold.worst.outputTokens,
          JSON.stringify(RECORD_CODEC.encode(record)),
          this.options.firstPollMs,
        ],
      );
      await c.query("COMMIT");
    } catch (error) {
      await c.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      c.release();
    }
  }

  /** A pending row's state for a user's call on its response (null: none pending). */
  async pending(responseId: string): Promise<boolean> {
    const r = await this.deps.pool.query("SELECT 1 FROM deferred_settlements WHERE response_id = $1 AND state = 'pending'", [responseId]);
    return (r.rowCount ?? 0) > 0;
  }

  /** The user retrieved or cancelled the response: its row is polled at the next tick of the gateway holding its agent. */
  async nudge(responseId: string): Promise<void> {
    await this.deps.pool
      .query("UPDATE deferred_settlements SET next_poll_at = now() WHERE response_id = $1 AND state = 'pending' AND next_poll_at > now()", [responseId])
      .catch((error: unknown) => this.deps.log.warn("deferred.nudge_failed", { error }));
  }

  start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => void this.tick(), this.options.tickMs);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#ticking?.catch(() => undefined);
  }

  /** One round: settles the rows due by a rule, then polls the due rows of this gateway's agents. Returns the rows settled. */
  tick(): Promise<number> {
    this.#ticking ??= this.#tick()
      .catch((error: unknown) => {
        this.deps.log.warn("deferred.tick_failed", { error });
        return 0;
      })
      .finally(() => {
        this.#ticking = null;
      });
    return this.#ticking;
  }

  async #tick(): Promise<number> {
    let settled = await this.#settleByRule();
    const local = this.deps.localAgentIds();
    if (local.length === 0 || this.#closed) return settled;
    // Claimed by pushing the next poll past this round (another gateway skips the locked rows and then sees them not due).
    const claimed = await this.deps.pool.query<Row>(
      `UPDATE deferred_settlements d SET next_poll_at = now() + make_interval(secs => $2::double precision / 1000), attempts = d.attempts + 1
       WHERE d.request_id IN (
         SELECT request_id FROM deferred_settlements
         WHERE state = 'pending' AND next_poll_at <= now() AND agent_id = ANY($1::text[])
         ORDER BY next_poll_at LIMIT ${DEFERRED_CLAIM_BATCH_MAX} FOR UPDATE SKIP LOCKED)
       RETURNING d.request_id, d.user_id, d.agent_id, d.owner_id, d.model, d.response_id, d.held_micros::text, d.pricing, d.worst_input_tokens,
         d.worst_output_tokens, d.record, d.attempts, d.created_at`,
      [local, this.options.pollTimeoutMs * 2],
    );
    for (const row of claimed.rows) {
      if (this.#closed) break;
      const conn = this.deps.localAgent(row.agent_id);
      const result: PollResult = conn ? await this.#poll(conn, row) : { kind: "no_answer", why: "agent not connected here" };
      if (result.kind === "terminal") {
        const { usage, capped } = cappedUsage(result.response, { inputTokens: row.worst_input_tokens, outputTokens: row.worst_output_tokens });
        if (capped) this.deps.log.warn("deferred.usage_capped", { requestId: row.request_id, agentId: row.agent_id });
        if (await this.#settle(row, { usage, estimated: capped, cause: endCauseOf(result.status), by: result.status, status: result.status }, conn ?? null))
          settled++;
      } else if (result.kind === "gone") {
        if (await this.#settle(row, { usage: null, estimated: false, cause: "upstream_error", by: "gone", status: "gone" }, conn ?? null)) settled++;
      } else {
        const status = result.kind === "running" ? result.status : `no answer: ${result.why}`;
        const waitMs = Math.min(this.options.pollMaxMs, this.options.firstPollMs * 2 ** Math.min(20, Math.max(0, row.attempts - 1)));
        await this.deps.pool.query(
          "UPDATE deferred_settlements SET next_poll_at = now() + make_interval(secs => $2::double precision / 1000), last_status = $3 WHERE request_id = $1 AND state = 'pending'",
          [row.request_id, waitMs, status.slice(0, 200)],
        );
      }
    }
    return settled;
  }

  /** Rows no poll will end: the agent revoked or deleted, or older than the age limit. Any gateway settles them (idempotent). */
  async #settleByRule(): Promise<number> {
    const r = await this.deps.pool.query<Row & { rule: string }>(
      `SELECT d.request_id, d.user_id, d.agent_id, d.owner_id, d.model, d.response_id, d.held_micros::text, d.pricing, d.worst_input_tokens,
         d.worst_output_tokens, d.record, d.attempts, d.created_at,
         CASE WHEN a.id IS NULL OR a.status = 'revoked' THEN 'agent_retired' ELSE 'expired' END AS rule
       FROM deferred_settlements d LEFT JOIN agents a ON a.id = d.agent_id
       WHERE d.state = 'pending' AND (a.id IS NULL OR a.status = 'revoked' OR d.created_at < now() - make_interval(secs => $1::double precision / 1000))
       LIMIT ${DEFERRED_CLAIM_BATCH_MAX}`,
      [this.options.maxAgeMs],
    );
    let settled = 0;
    for (const row of r.rows) {
      if (await this.#settle(row, { usage: null, estimated: false, cause: "upstream_error", by: row.rule, status: row.rule }, null)) settled++;
    }
    return settled;
  }

  /** Retrieves the response through its agent. */
  #poll(conn: AgentLink, row: Row): Promise<PollResult> {
    const head: RequestHead = {
      requestId: newId("req"),
      method: "GET",
      path: `/v1/responses/${row.response_id}`,
      api: "openai",
      model: row.model,
      headers: [],
      bodyBytes: 0,
      estimatedTokens: null,
    };
    return new Promise<PollResult>((resolve) => {
      let status = 0;
      let bytes = 0;
      const chunks: Uint8Array[] = [];
      let done = false;
      const finish = (r: PollResult) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        stream?.reset(ResetCode.CANCEL, "deferred poll timed out");
        finish({ kind: "no_answer", why: "timeout" });
      }, this.options.pollTimeoutMs);
      let stream: ReturnType<AgentLink["openStream"]> | null = null;
      try {
        stream = conn.openStream(head, {
          response: (h) => {
            status = h.status;
          },
          data: (chunk) => {
            bytes += chunk.length;
            if (bytes <= DEFERRED_RESPONSE_BYTES_MAX) chunks.push(chunk);
            stream?.consumed(chunk.length);
          },
          end: () => {
            if (status === 404) return finish({ kind: "gone" });
            if (status !== 200 || bytes > DEFERRED_RESPONSE_BYTES_MAX) return finish({ kind: "no_answer", why: `status ${status}` });
            let body: unknown;
            try {
              body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            } catch {
              return finish({ kind: "no_answer", why: "not JSON" });
            }
            const obj = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
            const s = typeof obj.status === "string" ? obj.status : "";
            finish(TERMINAL_STATUSES.has(s) ? { kind: "terminal", status: s, response: obj } : { kind: "running", status: s || "unknown" });
          },
          reset: (_code, reason) => finish({ kind: "no_answer", why: reason.slice(0, 100) }),
        });
        stream.end();
      } catch (error) {
        finish({ kind: "no_answer", why: error instanceof Error ? error.message : "stream refused" });
      }
    });
  }

  /**
   * Settles the row once (`wellspring_settle_deferred`, idempotent by request id): the charge for `usage` (none
   * for a rule without a terminal object), the row marked, the request record completed; then the agent gets its
   * statement. True when this call settled it.
   */
  async #settle(
    row: Row,
    end: { usage: Usage | null; estimated: boolean; cause: EndCause; by: string; status: string },
    conn: AgentLink | null,
  ): Promise<boolean> {
    const usage = end.usage ?? { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 };
    const money = deferredCharge(row.pricing, row.model, usage, row.owner_id !== null);
    const charged = end.usage ? money : { chargeMicros: 0n, officialMicros: 0n, earningMicros: 0n, planBps: money.planBps };
    const decoded = RECORD_CODEC.decode(row.record);
    const record: RequestRecordInput | null = decoded && {
      ...decoded,
      endCause: end.cause,
      inputTokens: usage.inputTokens,
      outputTokens: usage.outputTokens,
      cachedInputTokens: usage.cachedInputTokens,
      usageEstimated: end.estimated,
      priceVer: row.pricing.priceVer,
      tier: row.pricing.tier,
      tierBps: row.pricing.tierBps,
      userChargeMicros: charged.chargeMicros,
      ownerEarningMicros: charged.earningMicros,
    };
    const c = await this.deps.pool.connect();
    let outcome: string;
    let recordUpdated = true;
    try {
      await c.query("BEGIN");
      const r = await c.query<{ outcome: string }>("SELECT outcome FROM wellspring_settle_deferred($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", [
        row.request_id,
        charged.chargeMicros.toString(),
        charged.earningMicros.toString(),
        usage.inputTokens,
        usage.outputTokens,
        usage.cachedInputTokens,
        end.estimated,
        end.cause,
        charged.officialMicros.toString(),
        charged.planBps,
      ]);
      outcome = r.rows[0]!.outcome;
      await c.query(
        "UPDATE deferred_settlements SET state = 'settled', settled_at = now(), settled_by = $2, last_status = $3, charge_micros = $4 WHERE request_id = $1 AND state = 'pending'",
        [row.request_id, end.by, end.status, charged.chargeMicros.toString()],
      );
      if (record && outcome === "settled") {
        const u = await c.query(
          `UPDATE request_records SET end_cause = $3, input_tokens = $4, output_tokens = $5, cached_input_tokens = $6, usage_estimated = $7,
             price_ver = $8, tier = $9, tier_bps = $10, user_charge_micros = $11, owner_earning_micros = $12
           WHERE id = $1 AND started_at = $2`,
          [
            record.id,
            record.startedAt,
            record.endCause,
            record.inputTokens,
            record.outputTokens,
            record.cachedInputTokens,
            record.usageEstimated,
            record.priceVer,
            record.tier,
            record.tierBps,
            String(record.userChargeMicros),
            String(record.ownerEarningMicros),
          ],
        );
        recordUpdated = (u.rowCount ?? 0) > 0;
      }
      await c.query("COMMIT");
    } catch (error) {
      await c.query("ROLLBACK").catch(() => undefined);
      this.deps.log.warn("deferred.settle_failed", { requestId: row.request_id, error });
      return false;
    } finally {
      c.release();
    }
    if (outcome !== "settled") return false;
    // The create call's record is still in its batch: this one (complete) goes first, the batch's copy is then ignored.
    if (record && !recordUpdated) this.deps.records.add(record);
    this.deps.log.info("deferred.settled", {
      requestId: row.request_id,
      agentId: row.agent_id,
      by: end.by,
      chargeMicros: charged.chargeMicros.toString(),
      polls: row.attempts,
    });
    const statement = settlementStatement(row.request_id, row.model, end.cause, {
      usage,
      estimated: end.estimated,
      chargeMicros: charged.chargeMicros,
      earningMicros: charged.earningMicros,
      priceVer: row.pricing.priceVer,
      tier: row.pricing.tier,
      tierBps: row.pricing.tierBps,
      reported: end.usage,
      written: null,
    });
    const link = conn ?? this.deps.localAgent(row.agent_id);
    if (statement && link && record) {
      // The agent may be elsewhere now: its receipt then comes with the hub's re-offer of unreceipted settlements.
      const sealed = this.deps.sealer ? await this.deps.sealer.sealWritten(statement, recordRowJson(record)) : statement;
      if (sealed) link.sendSettlement(sealed);
    }
    return true;
  }
}
