/**
 * The admin API (`/admin/v1/…` on the admin listener, `Authorization: Bearer $ADMIN_TOKEN`; off when
 * ADMIN_TOKEN is unset; wrong tokens are throttled per client address):
 * publish price versions, set tiers and plans, grant credit, make redemption codes, decide payouts, list and
 * decide risk flags, audit the ledger. Every change is one transaction with an audit event, and changes every gateway must apply at
 * once go out on the hub event channel. The portal's admin pages use the same operations.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type pg from "pg";
import type { Db, PriceEntry } from "@wellspring/db/core";
import { z } from "zod";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { FailureThrottle, FailureThrottleOptions } from "./failure_throttle.ts";
import { observeLimiter } from "../observability/metrics.ts";
import { checkArchive } from "../archive/check.ts";
import type { Ledger } from "../billing/ledger.ts";
import type { Treasury } from "../ops/treasury.ts";
import {
  addContentRule,
  CANARY_SUMMARY_WINDOW_MS,
  canarySummaries,
  ContentRuleError,
  listContentRules,
  removeContentRule,
  changeAgent,
  createPlan,
  actOnFlag,
  decideFlag,
  FLAG_ACTIONS,
  FLAG_NOTE_CHARS_MAX,
  listRiskFlags,
  publishPrices,
  setTierShare,
  setUserPlan,
  type AgentCanarySummary,
} from "../ops/mod.ts";
import type { PriceBook } from "../billing/prices.ts";
import type { AgentRegistry } from "../tunnel/registry.ts";
import type { Routing } from "../routing/mod.ts";
import { readJsonObject, sendJson } from "./account.ts";

/** Largest admin request body (a price table of a few thousand models fits), bytes. */
export const ADMIN_BODY_BYTES_MAX = 2 * 1024 * 1024;
const ACTOR = "admin-api";
/**
 * Admin-token guessing, per client address: 10 failures within a minute, then every attempt is refused for a
 * minute; at most 10,000 addresses tracked (defaults; ADMIN_AUTH_* override the first three).
 */
export const ADMIN_AUTH_DEFAULTS: FailureThrottleOptions = { failuresMax: 10, windowMs: 60_000, blockMs: 60_000, addressesMax: 10_000 };

export interface AdminDeps {
  db: Db;
  pool: pg.Pool;
  ledger: Ledger;
  treasury: Treasury;
  prices: PriceBook;
  registry: AgentRegistry;
  /** Breakers per agent × model, shown with each agent. */
  routing: Routing;
  /** SHA-256 of the admin token; null = admin API off. */
  tokenHash: Buffer | null;
  /** Wrong tokens per client address. */
  throttle: FailureThrottle;
  log: Logger;
  /** The clock, ms. */
  now: () => number;
  /** The client's address when the socket's is not it (a worker behind the primary's admin port); the socket's when unset. */
  clientAddress?: (req: IncomingMessage) => string;
}

export function adminTokenHash(token: string | undefined): Buffer | null {
  return token ? createHash("sha256").update(token).digest() : null;
}

/** Checks the admin token (throttled per client address); throws a GatewayError when it is missing or wrong. */
export function authorizeAdmin(req: IncomingMessage, deps: AdminDeps): void {
  if (!deps.tokenHash) throw new GatewayError("not_found", "The admin API is off: set ADMIN_TOKEN to enable it.");
  const address = deps.clientAddress?.(req) ?? req.socket.remoteAddress ?? "unknown";
  const now = deps.now();
  const waitMs = deps.throttle.waitMs(address, now);
  observeLimiter("admin_auth", waitMs > 0 ? "refused" : "allowed");
  if (waitMs > 0) {
    throw new GatewayError("rate_limited", "Too many wrong admin tokens from this address: try again after the Retry-After delay.", {
      retryAfterSeconds: Math.ceil(waitMs / 1000),
    });
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(String(req.headers.authorization ?? ""));
  // Compare fixed-length digests in constant time: neither the length nor a prefix of the token leaks.
  const given = createHash("sha256")
    .update(m?.[1] ?? "")
    .digest();
  if (!m || !timingSafeEqual(given, deps.tokenHash)) {
    const failures = deps.throttle.failed(address, now);
    deps.log.warn("admin.auth_failed", { address, failures, method: req.method, path: req.url?.split("?")[0] });
    throw new GatewayError("invalid_api_key", "Incorrect admin token.");
  }
  deps.throttle.succeeded(address);
}

/** Reads the JSON body and checks it against `schema`; the first problem becomes a 400 naming its field. */
async function body<T>(req: IncomingMessage, schema: z.ZodType<T>): Promise<T> {
  const raw = await readJsonObject(req, ADMIN_BODY_BYTES_MAX, { emptyIsObject: true });
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const param = issue.path
    .map(String)
    .join(".")
    .replace(/\.(\d+)\./g, "[$1].");
  throw new GatewayError("invalid_request", `${param || "body"}: ${issue.message}`, { param: param || null });
}

/** A non-negative integer amount of micro-units, given as a JSON integer or a decimal string. */
const micros = z
  .union([z.number().int().nonnegative().refine(Number.isSafeInteger, "must be a safe integer").transform(String), z.string()])
  .refine((v) => /^(0|[1-9][0-9]{0,18})$/.test(v), "must be a non-negative integer number of micro-units")
  .transform((v) => BigInt(v));
const positiveMicros = micros.refine((v) => v > 0n, "must be positive");
const text = (max = 500) => z.string().trim().min(1, "must not be empty").max(max, `must be at most ${max} characters`);
const MODEL = /^[\w.:/@-]{1,256}$/;

const priceEntry = z
  .object({
    provider: z.enum(["openai", "anthropic", "azure"]),
    model: z.string().regex(MODEL, "is not a model name"),
    input_micros_per_mtok: micros,
    output_micros_per_mtok: micros,
    cached_input_micros_per_mtok: micros.optional(),
    audio_second_micros: micros.default(0n),
    image_micros: micros.default(0n),
    character_micros_per_m: micros.default(0n),
  })
  .transform((p): PriceEntry => ({
    provider: p.provider,
    model: p.model,
    inputMicrosPerMTok: p.input_micros_per_mtok,
    outputMicrosPerMTok: p.output_micros_per_mtok,
    cachedInputMicrosPerMTok: p.cached_input_micros_per_mtok ?? p.input_micros_per_mtok,
    audioSecondMicros: p.audio_second_micros,
    imageMicros: p.image_micros,
    characterMicrosPerM: p.character_micros_per_m,
  }));
const priceEntries = z
  .array(priceEntry)
  .min(1, "must list at least one price")
  .superRefine((entries, ctx) => {
    const seen = new Set<string>();
    entries.forEach((e, i) => {
      const key = `${e.provider}:${e.model}`;
      if (seen.has(key)) ctx.addIssue({ code: "custom", path: [i], message: `lists ${key} twice` });
      seen.add(key);
    });
  });

const PublishPrices = z.object({ note: text().optional(), prices: priceEntries });
const ChangeAgent = z
  .object({ tier: z.enum(["S", "A", "discount"]).optional(), discount_lane: z.boolean().optional() })
  .refine((b) => b.tier !== undefined || b.discount_lane !== undefined, "nothing to change: send tier and/or discount_lane");
const SetTierShare = z.object({ bps: z.number().int().min(0).max(10_000) });
const CreatePlan = z.object({
  name: text(80),
  kind: z.enum(["standard", "promotional", "premium"]),
  multiplier_bps: z.number().int().min(1).max(1_000_000, "must be at most 1000000 (10000 = the official price)"),
  overrides: priceEntries.optional(),
});
const SetPlan = z.object({ plan_id: text(64).nullable() });
const Grant = z.object({ amount_micros: positiveMicros, reason: text(), grant_id: text(64).optional() });
const CodeBatch = z.object({
  amount_micros: positiveMicros,
  count: z.number().int(),
  note: text().optional(),
  expires_at: z.iso.datetime({ offset: true }).nullable().optional(),
});
const DecidePayout = z.discriminatedUnion("decision", [
  z.object({ decision: z.literal("paid"), reference: text(200) }),
  z.object({ decision: z.literal("cancelled"), reference: text(200).optional() }),
]);

const DecideFlag = z.object({ decision: z.enum(["approved", "dismissed", "suspended"]), note: text(FLAG_NOTE_CHARS_MAX) });
const FlagActionBody = z.object({ action: z.enum(FLAG_ACTIONS), note: text(FLAG_NOTE_CHARS_MAX) });
/** Why an action from a flag changed nothing, as the admin API says it (409). */
const FLAG_ACTION_REFUSED: Record<string, string> = {
  no_owner: "The flag's subject has no account whose earnings could be held.",
  nothing_available: "The owner has no earnings available to hold.",
  nothing_held: "The flag holds no earnings.",
  no_change: "The subject is not in a state this action changes (already suspended or active, revoked, or gone).",
};
const FlagStatus = z.enum(["open", "decided"]);
const AddContentRule = z.object({ list: text(40).default("default"), term: text(200) });

const priceJson = (p: PriceEntry) => ({
  provider: p.provider,
  model: p.model,
  input_micros_per_mtok: p.inputMicrosPerMTok.toString(),
  output_micros_per_mtok: p.outputMicrosPerMTok.toString(),
  cached_input_micros_per_mtok: p.cachedInputMicrosPerMTok.toString(),
  audio_second_micros: p.audioSecondMicros.toString(),
  image_micros: p.imageMicros.toString(),
  character_micros_per_m: p.characterMicrosPerM.toString(),
});

/** An agent's quality canaries over the summary window (ops/canaries.ts); null when none ran in it. */
const canaryJson = (c: AgentCanarySummary | undefined) =>
  c === undefined
    ? null
    : {
        window_ms: CANARY_SUMMARY_WINDOW_MS,
        total: c.total,
        errors: c.errors,
        substitutions: c.substitutions,
        error_rate_bps: c.errorRateBps,
        ttfb_p50_ms: c.ttfbP50Ms,
        last: c.last && { at: c.last.at.toISOString(), ok: c.last.ok, model: c.last.model, error: c.last.error, problems: c.last.problems },
        last_ok_at: c.lastOkAt?.toISOString() ?? null,
        last_failed_at: c.lastFailedAt?.toISOString() ?? null,
        tier_recommendation: c.recommendation,
      };

/** One admin request, its token already checked (`authorizeAdmin`). */
export async function handleAdmin(req: IncomingMessage, res: ServerResponse, path: string, deps: AdminDeps): Promise<void> {
  const method = req.method ?? "GET";
  const parts = path.split("/").slice(3); // ["", "admin", "v1", ...]
  const [resource, id, sub] = parts;

  if (resource === "prices" && !id) {
    if (method === "GET") {
      const t = await deps.prices.current();
      return sendJson(res, 200, { ver: t.ver, prices: t.prices.map(priceJson) });
    }
    if (method === "POST") {
      const b = await body(req, PublishPrices);
      const ver = await publishPrices(deps.db, ACTOR, b.prices, b.note);
      return sendJson(res, 201, { ver });
    }
  }

  if (resource === "agents" && !id && method === "GET") {
    const agents = await deps.db.agent.findMany({
      orderBy: { createdAt: "asc" },
      select: { id: true, ownerId: true, name: true, status: true, tier: true, discountLane: true, priceVer: true, lastSeenAt: true },
    });
    const breakers = deps.routing.breakers.list();
    const canaries = await canarySummaries(
      deps.db,
      agents.map((a) => a.id),
    );
    return sendJson(res, 200, {
      data: agents.map((a) => {
        const live = deps.registry.get(a.id);
        return {
          id: a.id,
          owner_id: a.ownerId,
          name: a.name,
          status: a.status,
          tier: a.tier,
          discount_lane: a.discountLane,
          connected: Boolean(live),
          price_ver: live?.priceVerAcked ?? a.priceVer,
          last_seen_at: a.lastSeenAt?.toISOString() ?? null,
          // What this gateway's connection of the agent reported, and routing's breakers for it (this gateway's view).
          models: live?.inventory?.models.map((m) => ({ provider: m.provider, model: m.model, context_tokens: m.contextTokens })) ?? [],
          breakers: breakers
            .filter((b) => b.agentId === a.id)
            .map((b) => ({
              model: b.model,
              state: b.state,
              recent_failures: b.recentFailures,
              retry_at: b.retryAtMs === null ? null : new Date(b.retryAtMs).toISOString(),
            })),
          canaries: canaryJson(canaries.get(a.id)),
        };
      }),
    });
  }

  if (resource === "agents" && id && !sub && method === "PATCH") {
    const b = await body(req, ChangeAgent);
    const change = { ...(b.tier ? { tier: b.tier } : {}), ...(b.discount_lane !== undefined ? { discountLane: b.discount_lane } : {}) };
    if (!(await changeAgent(deps.db, ACTOR, id, change))) throw new GatewayError("not_found", `No agent ${id}.`);
    return sendJson(res, 200, { id, ...(b.tier ? { tier: b.tier } : {}), ...(b.discount_lane !== undefined ? { discount_lane: b.discount_lane } : {}) });
  }

  if (resource === "tiers" && id && method === "PUT") {
    if (id !== "S" && id !== "A" && id !== "discount") throw new GatewayError("not_found", "Tiers are S, A and discount.");
    const { bps } = await body(req, SetTierShare);
    await setTierShare(deps.db, ACTOR, id, bps);
    return sendJson(res, 200, { tier: id, bps });
  }

  if (resource === "plans" && !id && method === "POST") {
    const b = await body(req, CreatePlan);
    const planId = await createPlan(deps.db, ACTOR, { name: b.name, kind: b.kind, multiplierBps: b.multiplier_bps, overrides: b.overrides ?? [] });
    return sendJson(res, 201, { id: planId, name: b.name, kind: b.kind, multiplier_bps: b.multiplier_bps });
  }

  if (resource === "users" && id && sub === "plan" && method === "PUT") {
    const { plan_id: planId } = await body(req, SetPlan);
    const ok = await setUserPlan(deps.db, ACTOR, id, planId);
    if (ok === "no_plan") throw new GatewayError("not_found", `No plan ${planId}.`, { param: "plan_id" });
    if (ok === "no_user") throw new GatewayError("not_found", `No user ${id}.`);
    return sendJson(res, 200, { user_id: id, plan_id: planId, note: "applies to requests that start from now, on every gateway" });
  }

  if (resource === "users" && id && sub === "grants" && method === "POST") {
    const b = await body(req, Grant);
    if (!(await deps.db.user.findUnique({ where: { id }, select: { id: true } }))) throw new GatewayError("not_found", `No user ${id}.`);
    const result = await deps.treasury.grant(ACTOR, id, b.amount_micros, b.reason, b.grant_id);
    return sendJson(res, result === "credited" ? 201 : 200, { user_id: id, amount_micros: b.amount_micros.toString(), result });
  }

  if (resource === "redemption-batches" && !id && method === "POST") {
    const b = await body(req, CodeBatch);
    try {
      const batch = await deps.treasury.createRedemptionBatch(ACTOR, {
        amountMicros: b.amount_micros,
        count: b.count,
        note: b.note,
        expiresAt: b.expires_at ? new Date(b.expires_at) : null,
      });
      return sendJson(res, 201, { batch_id: batch.batchId, amount_micros: b.amount_micros.toString(), codes: batch.codes });
    } catch (error) {
      if (error instanceof RangeError) throw new GatewayError("invalid_request", error.message);
      throw error;
    }
  }

  if (resource === "payouts" && id && !sub && method === "POST") {
    const b = await body(req, DecidePayout);
    const result = await deps.treasury.decidePayout(ACTOR, id, b.decision, b.reference);
    if (result === "not_pending") throw new GatewayError("conflict", `Payout ${id} does not exist or was already decided.`);
    return sendJson(res, 200, { id, status: b.decision });
  }

  if (resource === "risk-flags" && !id && method === "GET") {
    const status = FlagStatus.safeParse(new URL(req.url ?? "/", "http://admin").searchParams.get("status") ?? "open");
    if (!status.success) throw new GatewayError("invalid_request", "status: must be open or decided", { param: "status" });
    const flags = await listRiskFlags(deps.db, status.data);
    return sendJson(res, 200, {
      data: flags.map((f) => ({
        id: f.id,
        kind: f.kind,
        subject: f.subject,
        severity: f.severity,
        status: f.status,
        evidence: f.evidence,
        raised_count: f.raisedCount,
        created_at: f.createdAt.toISOString(),
        last_raised_at: f.lastRaisedAt.toISOString(),
        decided_at: f.decidedAt?.toISOString() ?? null,
        decided_by: f.decidedBy,
        note: f.note,
      })),
    });
  }

  if (resource === "risk-flags" && id && !sub && method === "POST") {
    const b = await body(req, DecideFlag);
    const result = await decideFlag(deps.db, ACTOR, id, b.decision, b.note, ACTOR);
    if (result === "not_open") throw new GatewayError("conflict", `Flag ${id} does not exist or was already decided.`);
    return sendJson(res, 200, { id, status: b.decision });
  }

  if (resource === "risk-flags" && id && sub === "actions" && method === "POST") {
    const b = await body(req, FlagActionBody);
    const r = await actOnFlag(deps.db, ACTOR, id, b.action, b.note);
    if (r.outcome === "no_flag") throw new GatewayError("not_found", `No flag ${id}.`);
    if (r.outcome === "note_required" || r.outcome === "note_too_long") throw new GatewayError("invalid_request", "note: required", { param: "note" });
    if (r.outcome !== "done") throw new GatewayError("conflict", FLAG_ACTION_REFUSED[r.outcome]!);
    const snake = Object.entries(r.detail).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), typeof v === "bigint" ? v.toString() : v]);
    return sendJson(res, 200, { id, action: b.action, ...Object.fromEntries(snake) });
  }

  if (resource === "content-rules" && !id && method === "GET") {
    const rules = await listContentRules(deps.db);
    return sendJson(res, 200, {
      data: rules.map((r) => ({ id: r.id, list: r.list, term: r.term, created_at: r.createdAt.toISOString(), created_by: r.createdBy })),
    });
  }

  if (resource === "content-rules" && !id && method === "POST") {
    const b = await body(req, AddContentRule);
    try {
      const ruleId = await addContentRule(deps.db, ACTOR, b.list, b.term);
      return sendJson(res, 201, { id: ruleId, list: b.list, note: "applies on every gateway within 2 s" });
    } catch (error) {
      if (error instanceof ContentRuleError) throw new GatewayError("invalid_request", error.message);
      throw error;
    }
  }

  if (resource === "content-rules" && id && !sub && method === "DELETE") {
    if (!(await removeContentRule(deps.db, ACTOR, id))) throw new GatewayError("not_found", `No active content rule ${id}.`);
    return sendJson(res, 200, { id, removed: true });
  }

  if (resource === "ledger" && id === "audit" && method === "GET") {
    const report = await deps.ledger.audit();
    // Archived days count through their totals; the archive check says whether those can be trusted.
    const archive = await checkArchive(deps.pool);
    const ok = report.ok && archive.ok;
    return sendJson(res, ok ? 200 : 409, {
      ok,
      problems: [...report.problems, ...archive.problems],
      journal_sum_micros: report.journalSumMicros.toString(),
      wallets_checked: report.walletsChecked,
      archived_slices_checked: archive.slicesChecked,
    });
  }

  throw new GatewayError("route_not_found", `Unknown admin route: ${method} ${path}.`);
}
