/**
 * The poller of deferred settlements (docs/billing.md, "Background responses" and "Batches"; the money rules are
 * `billing/deferred.ts`, each kind's provider calls `deferred_kinds.ts`): hands a create call's hold over to a
 * `held` reservation and a `deferred_settlements` row, polls the object through the agent that made it until it
 * ends, and settles once.
 */
import type pg from "pg";
import { newId } from "@wellspring/db/core";
import { ResetCode, type RequestHead } from "@wellspring/protocol";
import type { Logger } from "../log.ts";
import type { BudgetTaken } from "../limits/limiter.ts";
import type { AgentLink } from "../tunnel/hub_stream.ts";
import type { HubRecordSealer } from "../ledger/hub_record.ts";
import { RECORD_CODEC, recordRowJson, type RecordWriter, type RequestRecordInput } from "./records.ts";
import {
  capUsage,
  DEFAULT_DEFERRED_OPTIONS,
  DEFERRED_CLAIM_BATCH_MAX,
  deferredCharge,
  type DeferredHold,
  type DeferredKind,
  type DeferredOptions,
  type DeferredPricing,
} from "../billing/deferred.ts";
import { BPS } from "../billing/prices.ts";
import { settlementStatement } from "../billing/statement.ts";
import type { EndCause, Usage } from "../billing/usage.ts";
import { DEFERRED_KINDS } from "./deferred_registry.ts";
import {
  type DeferredAgent,
  type DeferredCall,
  type DeferredKindHandler,
  type DeferredKinds,
  type DeferredPoll,
  type DeferredRowView,
} from "./deferred_kinds.ts";

/** A row as the poller reads it. */
interface Row {
  request_id: string;
  kind: DeferredKind;
  user_id: string;
  agent_id: string;
  owner_id: string | null;
  model: string;
  object_id: string;
  held_micros: string;
  price_bps: number;
  pricing: DeferredPricing;
  worst_input_tokens: number;
  worst_output_tokens: number;
  record: unknown;
  budget_taken: BudgetTaken | null;
  attempts: number;
  created_at: Date;
}

const ROW_COLUMNS = `d.request_id, d.kind::text AS kind, d.user_id, d.agent_id, d.owner_id, d.model, d.object_id, d.held_micros::text, d.price_bps,
  d.pricing, d.worst_input_tokens::float8 AS worst_input_tokens, d.worst_output_tokens::float8 AS worst_output_tokens, d.record, d.budget_taken, d.attempts, d.created_at`;

function view(row: Row): DeferredRowView {
  return {
    requestId: row.request_id,
    kind: row.kind,
    userId: row.user_id,
    agentId: row.agent_id,
    model: row.model,
    objectId: row.object_id,
    worst: { inputTokens: row.worst_input_tokens, outputTokens: row.worst_output_tokens },
    createdAt: row.created_at,
  };
}

type Terminal = Extract<DeferredPoll, { kind: "terminal" }>;

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
  /** The kinds this gateway polls (default `DEFERRED_KINDS`). */
  kinds?: DeferredKinds;
  /** Gives a key's monthly budget pool back what a settled charge did not use (`Limiter.refundBudget`). */
  refundBudget?: (taken: BudgetTaken, amountMicros: number) => void;
}

export class DeferredSettlements {
  readonly options: DeferredOptions;
  readonly kinds: DeferredKinds;
  #timer: ReturnType<typeof setInterval> | null = null;
  #ticking: Promise<number> | null = null;
  #closed = false;

  constructor(private readonly deps: DeferredDeps) {
    this.options = { ...DEFAULT_DEFERRED_OPTIONS, ...deps.options };
    this.kinds = deps.kinds ?? DEFERRED_KINDS;
  }

  /**
   * The create call ended with the object still running: the hold moves to a reservation of its own and the row
   * is written, in one transaction. Resolves once both are durable. `snapshot`: the created object's content-free
   * fields, for a kind that keeps them.
   */
  async defer(
    hold: DeferredHold,
    objectId: string,
    record: RequestRecordInput,
    kind: DeferredKind = "response",
    snapshot: Record<string, unknown> | null = null,
    budget: BudgetTaken | null = null,
  ): Promise<void> {
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
        `INSERT INTO deferred_settlements (request_id, kind, user_id, agent_id, owner_id, model, object_id, held_micros, price_bps, pricing,
           worst_input_tokens, worst_output_tokens, record, snapshot, budget_taken, next_poll_at)
         VALUES ($1, $2::"DeferredKind", $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
           now() + make_interval(secs => $16::double precision / 1000))
         ON CONFLICT (request_id) DO NOTHING`,
        [
          hold.requestId,
          kind,
          hold.userId,
          hold.agentId,
          hold.ownerId,
          hold.model,
          objectId,
          r.rows[0]!.held,
          Number(hold.priceBps ?? BPS),
          JSON.stringify(p),
          hold.worst.inputTokens,
          hold.worst.outputTokens,
          JSON.stringify(RECORD_CODEC.encode(record)),
          snapshot === null ? null : JSON.stringify(snapshot),
          budget === null ? null : JSON.stringify(budget),
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

  /** Whether the object has a row still pending (its usage not settled yet). */
  async pending(objectId: string, kind: DeferredKind = "response"): Promise<boolean> {
    const r = await this.deps.pool.query("SELECT 1 FROM deferred_settlements WHERE kind = $2::\"DeferredKind\" AND object_id = $1 AND state = 'pending'", [
      objectId,
      kind,
    ]);
    return (r.rowCount ?? 0) > 0;
  }

  /** Where a user's object of `kind` lives (the agent that created it, and the model it was asked under); null when it is not theirs. */
  async routeOf(kind: DeferredKind, objectId: string, userId: string): Promise<{ agentId: string; model: string } | null> {
    const r = await this.deps.pool.query<{ agent_id: string; model: string }>(
      `SELECT agent_id, model FROM deferred_settlements WHERE kind = $1::"DeferredKind" AND object_id = $2 AND user_id = $3`,
      [kind, objectId, userId],
    );
    const row = r.rows[0];
    return row ? { agentId: row.agent_id, model: row.model } : null;
  }

  /** The user retrieved or cancelled the object: its row is polled at the next tick of the gateway holding its agent. */
  async nudge(objectId: string, kind: DeferredKind = "response"): Promise<void> {
    await this.deps.pool
      .query(
        "UPDATE deferred_settlements SET next_poll_at = now() WHERE kind = $2::\"DeferredKind\" AND object_id = $1 AND state = 'pending' AND next_poll_at > now()",
        [objectId, kind],
      )
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

  #kindNames(): string[] {
    return Object.keys(this.kinds);
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
         WHERE state = 'pending' AND next_poll_at <= now() AND agent_id = ANY($1::text[]) AND kind::text = ANY($3::text[])
         ORDER BY next_poll_at LIMIT ${DEFERRED_CLAIM_BATCH_MAX} FOR UPDATE SKIP LOCKED)
       RETURNING ${ROW_COLUMNS}`,
      [local, this.options.pollTimeoutMs * 2, this.#kindNames()],
    );
    for (const row of claimed.rows) {
      if (this.#closed) break;
      const handler = this.kinds[row.kind]!;
      const conn = this.deps.localAgent(row.agent_id);
      let result: DeferredPoll = { kind: "no_answer", why: "agent not connected here" };
      let usage: { usage: Usage | null } | { noAnswer: string } | null = null;
      if (conn) {
        const agent = this.#agent(conn, row, handler);
        const answer = await agent.get(handler.poll(view(row)), handler.pollBytesMax);
        if ("error" in answer) result = { kind: "no_answer", why: answer.error };
        else if (answer.truncated) result = { kind: "no_answer", why: `answer over ${handler.pollBytesMax} bytes` };
        else result = handler.parse(answer.status, answer.body);
        if (result.kind === "terminal") usage = handler.usage ? await handler.usage(view(row), result, agent) : { usage: result.usage };
      }
      if (result.kind === "terminal" && usage && !("noAnswer" in usage)) {
        const reported = usage.usage;
        const { usage: charged, capped } = capUsage(reported ?? { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 }, view(row).worst);
        if (capped) this.deps.log.warn("deferred.usage_capped", { requestId: row.request_id, agentId: row.agent_id });
        const end = {
          usage: reported === null ? null : charged,
          estimated: capped,
          cause: handler.endCause(result.status),
          by: result.status,
          status: result.status,
        };
        if (await this.#settle(row, end, conn ?? null, result)) settled++;
      } else if (result.kind === "gone") {
        if (await this.#settle(row, { usage: null, estimated: false, cause: "upstream_error", by: "gone", status: "gone" }, conn ?? null, null)) settled++;
      } else {
        const status =
          result.kind === "running"
            ? result.status
            : result.kind === "no_answer"
              ? `no answer: ${result.why}`
              : usage && "noAnswer" in usage
                ? `${result.status}, usage: no answer: ${usage.noAnswer}`
                : "unknown";
        const object = result.kind === "running" || result.kind === "terminal" ? result.object : null;
        const snapshot = object && handler.snapshot ? handler.snapshot(object) : null;
        const waitMs = Math.min(this.options.pollMaxMs, this.options.firstPollMs * 2 ** Math.min(20, Math.max(0, row.attempts - 1)));
        await this.deps.pool.query(
          `UPDATE deferred_settlements SET next_poll_at = now() + make_interval(secs => $2::double precision / 1000), last_status = $3,
             snapshot = COALESCE($4::jsonb, snapshot)
           WHERE request_id = $1 AND state = 'pending'`,
          [row.request_id, waitMs, status.slice(0, 200), snapshot === null ? null : JSON.stringify(snapshot)],
        );
      }
    }
    return settled;
  }

  /**
   * Rows no poll will end: the agent revoked or deleted, or older than their kind's age limit. Any gateway settles
   * them (idempotent).
   */
  async #settleByRule(): Promise<number> {
    const names = this.#kindNames();
    const ages = names.map((k) => this.kinds[k as DeferredKind]!.maxAgeMs ?? this.options.maxAgeMs);
    const r = await this.deps.pool.query<Row & { rule: string }>(
      `SELECT ${ROW_COLUMNS},
         CASE WHEN a.id IS NULL OR a.status = 'revoked' THEN 'agent_retired' ELSE 'expired' END AS rule
       FROM deferred_settlements d
         JOIN unnest($1::text[], $2::double precision[]) AS k(kind, max_age_ms) ON k.kind = d.kind::text
         LEFT JOIN agents a ON a.id = d.agent_id
       WHERE d.state = 'pending' AND (a.id IS NULL OR a.status = 'revoked' OR d.created_at < now() - make_interval(secs => k.max_age_ms / 1000))
       LIMIT ${DEFERRED_CLAIM_BATCH_MAX}`,
      [names, ages],
    );
    let settled = 0;
    for (const row of r.rows) {
      if (await this.#settle(row, { usage: null, estimated: false, cause: "upstream_error", by: row.rule, status: row.rule }, null, null)) settled++;
    }
    return settled;
  }

  /** Provider calls through the row's agent, for its kind. */
  #agent(conn: AgentLink, row: Row, handler: DeferredKindHandler): DeferredAgent {
    const call = (c: DeferredCall, onData: (chunk: Uint8Array) => void) => this.#call(conn, row, handler, c, onData);
    return {
      get: async (c, maxBytes) => {
        const chunks: Uint8Array[] = [];
        let bytes = 0;
        const r = await call(c, (chunk) => {
          bytes += chunk.length;
          if (bytes <= maxBytes) chunks.push(chunk);
        });
        if ("error" in r) return r;
        return { status: r.status, body: Buffer.concat(chunks), truncated: bytes > maxBytes };
      },
      stream: call,
    };
  }

  /** One GET through the agent: the answer's chunks to `onData`, each credited back once handed over; bounded by `pollTimeoutMs`. */
  #call(
    conn: AgentLink,
    row: Row,
    handler: DeferredKindHandler,
    call: DeferredCall,
    onData: (chunk: Uint8Array) => void,
  ): Promise<{ status: number } | { error: string }> {
    const head: RequestHead = {
      requestId: newId("req"),
      method: "GET",
      path: call.path,
      api: handler.api,
      model: row.model,
      headers: call.headers ?? [],
      bodyBytes: 0,
      estimatedTokens: null,
    };
    return new Promise((resolve) => {
      let status = 0;
      let done = false;
      const finish = (r: { status: number } | { error: string }) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        stream?.reset(ResetCode.CANCEL, "deferred poll timed out");
        finish({ error: "timeout" });
      }, this.options.pollTimeoutMs);
      let stream: ReturnType<AgentLink["openStream"]> | null = null;
      try {
        stream = conn.openStream(head, {
          response: (h) => {
            status = h.status;
          },
          data: (chunk) => {
            if (done) return;
            try {
              onData(chunk);
            } catch (error) {
              stream?.reset(ResetCode.CANCEL, "deferred reader failed");
              finish({ error: error instanceof Error ? error.message.slice(0, 100) : "reader failed" });
              return;
            }
            stream?.consumed(chunk.length);
          },
          end: () => finish({ status }),
          reset: (_code, reason) => finish({ error: reason.slice(0, 100) }),
        });
        stream.end();
      } catch (error) {
        finish({ error: error instanceof Error ? error.message : "stream refused" });
      }
    });
  }

  /**
   * Settles the row once (`wellspring_settle_deferred`, idempotent by request id): the charge for `usage` (none
   * for a rule without a terminal object) at the row's share of the price table, the row marked, the request record
   * completed, the kind's own writes; then the agent gets its statement. True when this call settled it.
   */
  async #settle(
    row: Row,
    end: { usage: Usage | null; estimated: boolean; cause: EndCause; by: string; status: string },
    conn: AgentLink | null,
    terminal: Terminal | null,
  ): Promise<boolean> {
    const usage = end.usage ?? { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 };
    const handler = this.kinds[row.kind];
    const money = deferredCharge(row.pricing, row.model, usage, row.owner_id !== null, BigInt(row.price_bps));
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
      const snapshot = terminal && handler?.snapshot ? handler.snapshot(terminal.object) : null;
      await c.query(
        `UPDATE deferred_settlements SET state = 'settled', settled_at = now(), settled_by = $2, last_status = $3, charge_micros = $4,
           snapshot = COALESCE($5::jsonb, snapshot)
         WHERE request_id = $1 AND state = 'pending'`,
        [row.request_id, end.by, end.status, charged.chargeMicros.toString(), snapshot === null ? null : JSON.stringify(snapshot)],
      );
      if (outcome === "settled" && handler?.onSettled) await handler.onSettled(c, view(row), terminal);
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
    // The key's budget kept the worst case since the create call: it is corrected to the charge now.
    if (row.budget_taken && this.deps.refundBudget) this.deps.refundBudget(row.budget_taken, row.budget_taken.takenMicros - Number(charged.chargeMicros));
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
