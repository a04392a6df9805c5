/**
 * Detector: quality canaries. Every gateway sends a small fixed prompt (`canary_check.ts`) through each agent it
 * holds, for each chat model the agent offers, every CANARY_INTERVAL_MS (jittered by ±CANARY_JITTER_FRACTION):
 * on that agent's own tunnel, with no failover. An agent is held by one gateway at a time (the presence
 * compare-and-set), so the gateways split the agents between them without a lock or a leader; when an agent moves,
 * its new gateway reads when it was last canaried from `canary_results` and keeps the interval.
 *
 * A canary is not user traffic: it never passes the proxy, the limits or the meter and no user is charged; the
 * platform pays the owner for a canary that passed, as a user's request with its usage would earn (`pay`,
 * billing/canary_pay.ts; docs/ARCHITECTURE.md, "Quality canaries"). Each result is kept (agent, model, time, ok, time to first byte, error,
 * token counts; never text) and pruned after CANARY_RESULT_RETENTION_MS. An answer that is not the claimed model —
 * another `model` field, not the code asked for, or prompt tokens outside the family's band — raises
 * `model_substitution` on the agent with typed evidence.
 */
import { newId, type Db } from "@wellspring/db/core";
import { ResetCode, type Inventory, type Provider, type RequestHead } from "@wellspring/protocol";
import type { Logger } from "../log.ts";
import type { AgentLink, HubStream } from "../tunnel/hub_stream.ts";
import { effectiveTier, type AgentProfile } from "../tunnel/registry.ts";
import type { CanaryUsage } from "../billing/canary_pay.ts";
import {
  canaryApplies,
  canaryCode,
  canaryProblems,
  canaryRequest,
  promptTokenBand,
  readCanaryAnswer,
  type CanaryProblem,
  type CanaryRequest,
} from "./canary_check.ts";
import { appendDistinct, evidenceStrings, raiseRiskFlag, type RiskEvidence } from "./flags.ts";

export const MODEL_SUBSTITUTION = "model_substitution";
/** How often each agent × model is canaried by default, ms (6 h). */
export const CANARY_INTERVAL_MS_DEFAULT = 6 * 60 * 60 * 1000;
/** An agent × model never canaried before gets its first canary within this long of being seen, ms (5 min). */
export const CANARY_FIRST_DELAY_MS_MAX_DEFAULT = 5 * 60 * 1000;
/** Each interval is the configured one × (1 ± this), drawn anew each time, so agents connected together spread out. */
export const CANARY_JITTER_FRACTION = 0.1;
/** How often the scheduler looks for canaries due, ms. */
export const CANARY_TICK_MS_DEFAULT = 30_000;
/** Longest a canary waits for its whole answer, ms; past it the stream is reset and the canary fails (`timeout`). */
export const CANARY_TIMEOUT_MS_DEFAULT = 60_000;
/** Canaries one gateway runs at once. */
export const CANARY_CONCURRENCY_MAX = 4;
/** Largest canary answer read, bytes; a larger one is cut and the canary fails (`too_large`). */
export const CANARY_RESPONSE_BYTES_MAX = 64 * 1024;
/** How long a canary result is kept, ms (30 days). */
export const CANARY_RESULT_RETENTION_MS = 30 * 24 * 60 * 60 * 1000;
/** How often each gateway deletes results older than the retention, ms. */
export const CANARY_PRUNE_INTERVAL_MS = 60 * 60 * 1000;
/** Rows one prune statement deletes, at most (it repeats until fewer are left). */
export const CANARY_PRUNE_BATCH_ROWS = 5_000;
/** Distinct models a substitution flag lists. */
export const CANARY_EVIDENCE_MODELS_MAX = 16;

export interface ModelSubstitutionEvidence extends RiskEvidence {
  agentId: string;
  ownerId: string | null;
  /** Canaries that found a problem while the flag was open. */
  failedCanaries: number;
  /** The claimed models (`provider:model`) that failed, first seen first. */
  models: string[];
  /** The latest failed canary. */
  latest: {
    canaryId: string;
    at: string;
    model: string;
    answeredModel: string | null;
    problems: CanaryProblem[];
    promptTokens: number | null;
    expectedPromptTokens: number;
    promptTokenBand: { min: number; max: number } | null;
    completionTokens: number | null;
  };
}

function mergeEvidence(previous: RiskEvidence, next: RiskEvidence): RiskEvidence {
  const n = next as ModelSubstitutionEvidence;
  const failed = typeof previous.failedCanaries === "number" ? previous.failedCanaries : 0;
  return { ...n, failedCanaries: failed + 1, models: appendDistinct(evidenceStrings(previous.models), n.models, CANARY_EVIDENCE_MODELS_MAX) };
}

/** A model field that is not the claimed model is high severity; a count or an answer alone is lower. */
function severity(problems: readonly CanaryProblem[]): 1 | 2 | 3 {
  if (problems.includes("model_differs")) return 3;
  return problems.includes("prompt_tokens_out_of_range") ? 2 : 1;
}

/** What came back for one canary. `error` is null when the agent answered 200 with a whole body. */
export interface CanaryExchange {
  status: number;
  body: Buffer;
  ttfbMs: number | null;
  error: string | null;
}

/** Sends one canary on `link` (no failover) and collects its answer, within `timeoutMs`. */
export function dispatchCanary(link: AgentLink, requestId: string, req: CanaryRequest, timeoutMs: number, now: () => number): Promise<CanaryExchange> {
  const head: RequestHead = {
    requestId,
    method: "POST",
    path: req.path,
    api: req.api,
    model: req.model,
    headers: req.headers,
    bodyBytes: req.body.length,
    estimatedTokens: req.estimatedTokens,
  };
  return new Promise((resolve) => {
    const startedAt = now();
    let status = 0;
    let firstByteAt: number | null = null;
    let bytes = 0;
    const chunks: Buffer[] = [];
    let done = false;
    let stream: HubStream | null = null;
    const timer = setTimeout(() => {
      stream?.reset(ResetCode.CANCEL, "canary timed out");
      finish("timeout");
    }, timeoutMs);
    const finish = (error: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ status, body: Buffer.concat(chunks), ttfbMs: firstByteAt === null ? null : firstByteAt - startedAt, error });
    };
    try {
      stream = link.openStream(head, {
        response: (h) => {
          status = h.status;
        },
        data: (chunk) => {
          firstByteAt ??= now();
          bytes += chunk.length;
          if (bytes > CANARY_RESPONSE_BYTES_MAX) {
            stream?.reset(ResetCode.CANCEL, "canary answer too large");
            finish("too_large");
            return;
          }
          chunks.push(Buffer.from(chunk));
          stream?.consumed(chunk.length);
        },
        end: () => finish(status === 200 ? null : `http_${status}`),
        reset: (code) => finish(`reset_${code}`),
      });
    } catch {
      finish("unavailable");
      return;
    }
    const open = stream;
    if (open.sendNow(req.body)) open.end();
    else
      open.sendData(req.body).then(
        () => open.end(),
        () => finish("send_failed"),
      );
  });
}

/** The agents this gateway holds, as the scheduler reads them (`AgentRegistry`). */
export interface CanaryAgents {
  connections(): readonly (AgentLink & { readonly agentId: string | null; readonly inventory: Inventory | null })[];
  profile(agentId: string): Pick<AgentProfile, "ownerId" | "status" | "tier" | "discountLane"> | undefined;
}

export interface CanaryOptions {
  db: Db;
  log: Logger;
  registry: CanaryAgents;
  /** Interval per agent × model, ms; 0 turns canaries off. */
  intervalMs: number;
  /** Pays the owner for a canary that passed (billing on); the amount, or null when the model has no price. */
  pay?: ((u: CanaryUsage) => Promise<bigint | null>) | null;
  firstDelayMsMax?: number;
  tickMs?: number;
  timeoutMs?: number;
  /** The clock (UTC epoch ms); tests inject theirs. */
  now?: () => number;
  /** Draws in [0, 1) for the jitter; tests inject theirs. */
  random?: () => number;
}

interface Target {
  link: AgentLink;
  agentId: string;
  ownerId: string;
  tier: AgentProfile["tier"];
  provider: Provider;
  model: string;
  key: string;
}

export class CanaryScheduler {
  readonly #o: Required<Omit<CanaryOptions, "db" | "log" | "registry" | "pay">> & Pick<CanaryOptions, "db" | "log" | "registry" | "pay">;
  /** When each agent × model this gateway holds is next due (epoch ms), by `agentId provider:model`. */
  readonly #due = new Map<string, number>();
  readonly #running = new Set<string>();
  #ticking = false;
  #tickTimer: ReturnType<typeof setInterval> | null = null;
  #pruneTimer: ReturnType<typeof setInterval> | null = null;

  constructor(o: CanaryOptions) {
    this.#o = {
      ...o,
      firstDelayMsMax: o.firstDelayMsMax ?? CANARY_FIRST_DELAY_MS_MAX_DEFAULT,
      tickMs: o.tickMs ?? CANARY_TICK_MS_DEFAULT,
      timeoutMs: o.timeoutMs ?? CANARY_TIMEOUT_MS_DEFAULT,
      now: o.now ?? Date.now,
      random: o.random ?? Math.random,
    };
  }

  /** Canaries running now. */
  get running(): number {
    return this.#running.size;
  }

  get enabled(): boolean {
    return this.#o.intervalMs > 0;
  }

  /** Starts the tick and the prune timers (nothing when canaries are off). */
  start(): void {
    if (!this.enabled) return;
    this.#tickTimer = setInterval(() => void this.tick(), this.#o.tickMs);
    this.#tickTimer.unref();
    this.#pruneTimer = setInterval(
      () => void this.prune().catch((error: unknown) => this.#o.log.warn("risk.canary_prune_failed", { error })),
      CANARY_PRUNE_INTERVAL_MS,
    );
    this.#pruneTimer.unref();
  }

  stop(): void {
    if (this.#tickTimer) clearInterval(this.#tickTimer);
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
  }

  #jittered(): number {
    return Math.round(this.#o.intervalMs * (1 + (this.#o.random() * 2 - 1) * CANARY_JITTER_FRACTION));
  }

  /** The agents × chat models this gateway holds now, active and routable. */
  #targets(): Target[] {
    const out: Target[] = [];
    for (const conn of this.#o.registry.connections()) {
      const agentId = conn.agentId;
      const profile = agentId ? this.#o.registry.profile(agentId) : undefined;
      if (!agentId || !profile || profile.status !== "active" || !conn.routable) continue;
      for (const m of conn.inventory?.models ?? []) {
        if (!canaryApplies(m.model)) continue;
        out.push({
          link: conn,
          agentId,
          ownerId: profile.ownerId,
          tier: effectiveTier(profile),
          provider: m.provider,
          model: m.model,
          key: `${agentId} ${m.provider}:${m.model}`,
        });
      }
    }
    return out;
  }

  /** Schedules what is new, forgets what left, and starts the canaries due (at most CANARY_CONCURRENCY_MAX at once). */
  async tick(): Promise<void> {
    if (this.#ticking || !this.enabled) return;
    this.#ticking = true;
    try {
      const targets = this.#targets();
      const keys = new Set(targets.map((t) => t.key));
      for (const key of this.#due.keys()) if (!keys.has(key)) this.#due.delete(key);
      const unseen = targets.filter((t) => !this.#due.has(t.key));
      if (unseen.length > 0) await this.#schedule(unseen);
      const now = this.#o.now();
      for (const t of targets) {
        if (this.#running.size >= CANARY_CONCURRENCY_MAX) break;
        if (this.#running.has(t.key) || (this.#due.get(t.key) ?? Infinity) > now) continue;
        if (t.link.inFlight >= t.link.capacity) continue; // full: next tick
        this.#running.add(t.key);
        void this.#run(t)
          .catch((error: unknown) => this.#o.log.error("risk.canary_failed", { agentId: t.agentId, model: t.model, error }))
          .finally(() => {
            this.#running.delete(t.key);
            if (this.#due.has(t.key)) this.#due.set(t.key, this.#o.now() + this.#jittered());
            // A freed slot takes the next canary due now, not a tick later (a backlog drains at the concurrency).
            if (this.#tickTimer) void this.tick();
          });
      }
    } catch (error) {
      this.#o.log.warn("risk.canary_tick_failed", { error });
    } finally {
      this.#ticking = false;
    }
  }

  /** Due times of agents × models seen for the first time here: from their last canary on any gateway, or soon. */
  async #schedule(unseen: Target[]): Promise<void> {
    const agentIds = [...new Set(unseen.map((t) => t.agentId))];
    const rows = await this.#o.db.$queryRaw<{ agent_id: string; model: string; last: Date }[]>`
      SELECT agent_id, model, max(at) AS last FROM canary_results WHERE agent_id = ANY(${agentIds}::text[]) GROUP BY agent_id, model`;
    const last = new Map(rows.map((r) => [`${r.agent_id} ${r.model}`, r.last.getTime()]));
    const now = this.#o.now();
    for (const t of unseen) {
      const at = last.get(t.key);
      this.#due.set(t.key, at === undefined ? now + Math.floor(this.#o.random() * this.#o.firstDelayMsMax) : at + this.#jittered());
    }
  }

  /** One canary: dispatch, check, record, and raise the flag when the answer is not the claimed model's. */
  async #run(t: Target): Promise<void> {
    const id = newId("cnr");
    const code = canaryCode();
    const req = canaryRequest(t.provider, t.model, code);
    const startedAt = this.#o.now();
    const exchange = await dispatchCanary(t.link, id, req, this.#o.timeoutMs, this.#o.now);
    const durationMs = this.#o.now() - startedAt;
    const answer = exchange.error === null ? readCanaryAnswer(req.api, exchange.body) : null;
    const error = exchange.error ?? (answer === null ? "unreadable" : answer.promptTokens === null ? "no_usage" : null);
    const problems = answer && error === null ? canaryProblems(t.model, code, req.expectedPromptTokens, answer) : [];
    const model = `${t.provider}:${t.model}`;
    const at = new Date(this.#o.now());
    await this.#o.db.canaryResult.create({
      data: {
        id,
        agentId: t.agentId,
        model,
        at,
        ok: error === null && problems.length === 0,
        ttfbMs: exchange.ttfbMs,
        durationMs,
        error,
        answeredModel: answer?.model?.slice(0, 256) ?? null,
        promptTokens: answer?.promptTokens ?? null,
        completionTokens: answer?.completionTokens ?? null,
        expectedPromptTokens: req.expectedPromptTokens,
        problems,
      },
    });
    const ok = error === null && problems.length === 0;
    const paidMicros = ok && answer && this.#o.pay ? await this.#paid(t, req.api, id, answer.promptTokens ?? 0, answer.completionTokens ?? 0) : null;
    this.#o.log.info("risk.canary", {
      canaryId: id,
      agentId: t.agentId,
      model,
      ok,
      error,
      problems,
      ttfbMs: exchange.ttfbMs,
      paidMicros: paidMicros?.toString() ?? null,
    });
    if (problems.length === 0 || !answer) return;
    const evidence: ModelSubstitutionEvidence = {
      agentId: t.agentId,
      ownerId: t.ownerId,
      failedCanaries: 1,
      models: [model],
      latest: {
        canaryId: id,
        at: at.toISOString(),
        model,
        answeredModel: answer.model?.slice(0, 256) ?? null,
        problems,
        promptTokens: answer.promptTokens,
        expectedPromptTokens: req.expectedPromptTokens,
        promptTokenBand: promptTokenBand(t.model, req.expectedPromptTokens),
        completionTokens: answer.completionTokens,
      },
    };
    await raiseRiskFlag(this.#o.db, { kind: MODEL_SUBSTITUTION, subject: `agent:${t.agentId}`, severity: severity(problems), evidence, merge: mergeEvidence });
  }

  /** The owner's pay for a canary that passed; null when nothing was paid (no price, or the payment failed: logged). */
  async #paid(t: Target, api: CanaryRequest["api"], canaryId: string, inputTokens: number, outputTokens: number): Promise<bigint | null> {
    try {
      return await this.#o.pay!({ canaryId, ownerId: t.ownerId, tier: t.tier, api, model: t.model, inputTokens, outputTokens });
    } catch (error) {
      this.#o.log.warn("risk.canary_unpaid", { canaryId, agentId: t.agentId, error });
      return null;
    }
  }

  /** Deletes results older than CANARY_RESULT_RETENTION_MS before `nowMs`; the number deleted. */
  async prune(nowMs: number = this.#o.now()): Promise<number> {
    const cutoff = new Date(nowMs - CANARY_RESULT_RETENTION_MS);
    let deleted = 0;
    for (;;) {
      const n = await this.#o.db.$executeRaw`
        DELETE FROM canary_results WHERE id IN (SELECT id FROM canary_results WHERE at < ${cutoff} LIMIT ${CANARY_PRUNE_BATCH_ROWS})`;
      deleted += n;
      if (n < CANARY_PRUNE_BATCH_ROWS) break;
    }
    if (deleted > 0) this.#o.log.info("risk.canary_pruned", { deleted, retentionMs: CANARY_RESULT_RETENTION_MS });
    return deleted;
  }
}
