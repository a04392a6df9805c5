/**
 * The admin API (`/admin/v1/…` on the admin listener, `Authorization: Bearer $ADMIN_TOKEN`; off when
 * ADMIN_TOKEN is unset; wrong tokens are throttled per client address):
 * publish price versions, set tiers and plans, grant credit, make redemption codes, decide payouts, audit
 * the ledger. Every change is one transaction with an audit event, and changes every gateway must apply at
 * once go out on the hub event channel. The portal's admin pages use the same operations.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type pg from "pg";
import { newId, publishHubEvent, publishPriceVersion, type Db, type PriceEntry } from "@wellspring/db/core";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { FailureThrottle, FailureThrottleOptions } from "./failure_throttle.ts";
import type { Ledger } from "../billing/ledger.ts";
import { audit, type Treasury } from "../billing/treasury.ts";
import type { PriceBook } from "../billing/prices.ts";
import type { AgentRegistry } from "../tunnel/registry.ts";
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
  /** SHA-256 of the admin token; null = admin API off. */
  tokenHash: Buffer | null;
  /** Wrong tokens per client address. */
  throttle: FailureThrottle;
  log: Logger;
  /** The clock, ms. */
  now: () => number;
}

export function adminTokenHash(token: string | undefined): Buffer | null {
  return token ? createHash("sha256").update(token).digest() : null;
}

function authorize(req: IncomingMessage, deps: AdminDeps): void {
  if (!deps.tokenHash) throw new GatewayError("not_found", "The admin API is off: set ADMIN_TOKEN to enable it.");
  const address = req.socket.remoteAddress ?? "unknown";
  const now = deps.now();
  const waitMs = deps.throttle.waitMs(address, now);
  if (waitMs > 0) {
    throw new GatewayError("rate_limited", "Too many wrong admin tokens from this address: try again after the Retry-After delay.", { retryAfterSeconds: Math.ceil(waitMs / 1000) });
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(String(req.headers.authorization ?? ""));
  // Compare fixed-length digests in constant time: neither the length nor a prefix of the token leaks.
  const given = createHash("sha256").update(m?.[1] ?? "").digest();
  if (!m || !timingSafeEqual(given, deps.tokenHash)) {
    const failures = deps.throttle.failed(address, now);
    deps.log.warn("admin.auth_failed", { address, failures, method: req.method, path: req.url?.split("?")[0] });
    throw new GatewayError("invalid_api_key", "Incorrect admin token.");
  }
  deps.throttle.succeeded(address);
}

const body = (req: IncomingMessage) => readJsonObject(req, ADMIN_BODY_BYTES_MAX, { emptyIsObject: true });

/** A non-negative integer amount of micro-units, given as a JSON integer or a decimal string. */
function micros(v: unknown, param: string, { positive = false } = {}): bigint {
  const text = typeof v === "number" && Number.isSafeInteger(v) ? String(v) : typeof v === "string" ? v : "";
  if (!/^(0|[1-9][0-9]{0,18})$/.test(text)) throw new GatewayError("invalid_request", `${param} must be a non-negative integer number of micro-units.`, { param });
  const n = BigInt(text);
  if (positive && n === 0n) throw new GatewayError("invalid_request", `${param} must be positive.`, { param });
  return n;
}

function text(v: unknown, param: string, max = 500): string {
  if (typeof v !== "string" || !v.trim() || v.length > max) throw new GatewayError("invalid_request", `${param} must be a non-empty string of at most ${max} characters.`, { param });
  return v.trim();
}

const MODEL = /^[\w.:/@-]{1,256}$/;

function priceEntries(v: unknown): PriceEntry[] {
  if (!Array.isArray(v) || v.length === 0) throw new GatewayError("invalid_request", "prices must be a non-empty array.", { param: "prices" });
  const seen = new Set<string>();
  return v.map((raw, i) => {
    const p = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
    const provider = p.provider;
    if (provider !== "openai" && provider !== "anthropic" && provider !== "azure") throw new GatewayError("invalid_request", `prices[${i}].provider must be openai, anthropic or azure.`);
    if (typeof p.model !== "string" || !MODEL.test(p.model)) throw new GatewayError("invalid_request", `prices[${i}].model is not a model name.`);
    const key = `${provider}:${p.model}`;
    if (seen.has(key)) throw new GatewayError("invalid_request", `prices lists ${key} twice.`);
    seen.add(key);
    return {
      provider,
      model: p.model,
      inputMicrosPerMTok: micros(p.input_micros_per_mtok, `prices[${i}].input_micros_per_mtok`),
      outputMicrosPerMTok: micros(p.output_micros_per_mtok, `prices[${i}].output_micros_per_mtok`),
      cachedInputMicrosPerMTok: micros(p.cached_input_micros_per_mtok ?? p.input_micros_per_mtok, `prices[${i}].cached_input_micros_per_mtok`),
      audioSecondMicros: micros(p.audio_second_micros ?? 0, `prices[${i}].audio_second_micros`),
      imageMicros: micros(p.image_micros ?? 0, `prices[${i}].image_micros`),
      characterMicrosPerM: micros(p.character_micros_per_m ?? 0, `prices[${i}].character_micros_per_m`),
    };
  });
}

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

export async function handleAdmin(req: IncomingMessage, res: ServerResponse, path: string, deps: AdminDeps): Promise<void> {
  authorize(req, deps);
  const method = req.method ?? "GET";
  const parts = path.split("/").slice(3); // ["", "admin", "v1", ...]
  const [resource, id, sub] = parts;

  if (resource === "prices" && !id) {
    if (method === "GET") {
      const t = await deps.prices.current();
      return sendJson(res, 200, { ver: t.ver, prices: t.prices.map(priceJson) });
    }
    if (method === "POST") {
      const b = await body(req);
      const entries = priceEntries(b.prices);
      const note = b.note === undefined ? undefined : text(b.note, "note");
      const ver = await publishPriceVersion(deps.db, entries, note);
      await audit(deps.pool, ACTOR, "prices.published", `price_ver:${ver}`, { models: entries.length, note: note ?? null });
      return sendJson(res, 201, { ver });
    }
  }

  if (resource === "agents" && !id && method === "GET") {
    const agents = await deps.db.agent.findMany({ orderBy: { createdAt: "asc" }, select: { id: true, ownerId: true, name: true, status: true, tier: true, discountLane: true, priceVer: true, lastSeenAt: true } });
    return sendJson(res, 200, {
      data: agents.map((a) => {
        const live = deps.registry.get(a.id);
        return { id: a.id, owner_id: a.ownerId, name: a.name, status: a.status, tier: a.tier, discount_lane: a.discountLane, connected: Boolean(live), price_ver: live?.priceVerAcked ?? a.priceVer, last_seen_at: a.lastSeenAt?.toISOString() ?? null };
      }),
    });
  }

  if (resource === "agents" && id && !sub && method === "PATCH") {
    const b = await body(req);
    const data: { tier?: "S" | "A" | "discount"; discountLane?: boolean } = {};
    if (b.tier !== undefined) {
      if (b.tier !== "S" && b.tier !== "A" && b.tier !== "discount") throw new GatewayError("invalid_request", "tier must be S, A or discount.", { param: "tier" });
      data.tier = b.tier;
    }
    if (b.discount_lane !== undefined) {
      if (typeof b.discount_lane !== "boolean") throw new GatewayError("invalid_request", "discount_lane must be true or false.", { param: "discount_lane" });
      data.discountLane = b.discount_lane;
    }
    if (Object.keys(data).length === 0) throw new GatewayError("invalid_request", "Nothing to change: send tier and/or discount_lane.");
    const updated = await deps.db.$transaction(async (tx) => {
      const n = await tx.agent.updateMany({ where: { id }, data });
      if (n.count === 0) return false;
      await tx.auditEvent.create({ data: { actor: ACTOR, action: "agent.updated", subject: `agent:${id}`, detail: data } });
      await publishHubEvent(tx, { kind: "agent_changed", agentId: id });
      return true;
    });
    if (!updated) throw new GatewayError("not_found", `No agent ${id}.`);
    return sendJson(res, 200, { id, ...(data.tier ? { tier: data.tier } : {}), ...(data.discountLane !== undefined ? { discount_lane: data.discountLane } : {}) });
  }

  if (resource === "tiers" && id && method === "PUT") {
    if (id !== "S" && id !== "A" && id !== "discount") throw new GatewayError("not_found", "Tiers are S, A and discount.");
    const b = await body(req);
    const bps = b.bps;
    if (typeof bps !== "number" || !Number.isInteger(bps) || bps < 0 || bps > 10_000) throw new GatewayError("invalid_request", "bps must be an integer from 0 to 10000.", { param: "bps" });
    await deps.db.$transaction(async (tx) => {
      await tx.tierCoefficient.upsert({ where: { tier: id }, create: { tier: id, bps }, update: { bps } });
      await tx.auditEvent.create({ data: { actor: ACTOR, action: "tier.set", subject: `tier:${id}`, detail: { bps } } });
      await publishHubEvent(tx, { kind: "tariffs_changed" });
    });
    return sendJson(res, 200, { tier: id, bps });
  }

  if (resource === "plans" && !id && method === "POST") {
    const b = await body(req);
    const name = text(b.name, "name", 80);
    const kind = b.kind;
    if (kind !== "standard" && kind !== "promotional" && kind !== "premium") throw new GatewayError("invalid_request", "kind must be standard, promotional or premium.", { param: "kind" });
    const multiplierBps = b.multiplier_bps;
    if (typeof multiplierBps !== "number" || !Number.isInteger(multiplierBps) || multiplierBps < 1 || multiplierBps > 1_000_000) {
      throw new GatewayError("invalid_request", "multiplier_bps must be an integer from 1 to 1000000 (10000 = the official price).", { param: "multiplier_bps" });
    }
    const overrides = b.overrides === undefined ? [] : priceEntries(b.overrides);
    const planId = newId("plan");
    await deps.db.$transaction(async (tx) => {
      await tx.plan.create({ data: { id: planId, name, kind, multiplierBps } });
      if (overrides.length) {
        await tx.planModelPrice.createMany({
          data: overrides.map((o) => ({ planId, api: o.provider === "anthropic" ? "anthropic" : "openai", model: o.model, inputMicrosPerMTok: o.inputMicrosPerMTok, outputMicrosPerMTok: o.outputMicrosPerMTok, cachedInputMicrosPerMTok: o.cachedInputMicrosPerMTok })),
        });
      }
      await tx.auditEvent.create({ data: { actor: ACTOR, action: "plan.created", subject: `plan:${planId}`, detail: { name, kind, multiplierBps, overrides: overrides.length } } });
      await publishHubEvent(tx, { kind: "tariffs_changed" });
    });
    return sendJson(res, 201, { id: planId, name, kind, multiplier_bps: multiplierBps });
  }

  if (resource === "users" && id && sub === "plan" && method === "PUT") {
    const b = await body(req);
    const planId = b.plan_id === null ? null : text(b.plan_id, "plan_id", 64);
    const ok = await deps.db.$transaction(async (tx) => {
      if (planId && !(await tx.plan.findUnique({ where: { id: planId } }))) return "no_plan";
      const n = await tx.user.updateMany({ where: { id }, data: { planId } });
      if (n.count === 0) return "no_user";
      await tx.auditEvent.create({ data: { actor: ACTOR, action: "user.plan_set", subject: `user:${id}`, detail: { planId } } });
      await publishHubEvent(tx, { kind: "user_changed", userId: id });
      return "ok";
    });
    if (ok === "no_plan") throw new GatewayError("not_found", `No plan ${planId}.`, { param: "plan_id" });
    if (ok === "no_user") throw new GatewayError("not_found", `No user ${id}.`);
    return sendJson(res, 200, { user_id: id, plan_id: planId, note: "applies to requests that start from now, on every gateway" });
  }

  if (resource === "users" && id && sub === "grants" && method === "POST") {
    const b = await body(req);
    const amount = micros(b.amount_micros, "amount_micros", { positive: true });
    const reason = text(b.reason, "reason");
    const grantId = b.grant_id === undefined ? undefined : text(b.grant_id, "grant_id", 64);
    if (!(await deps.db.user.findUnique({ where: { id }, select: { id: true } }))) throw new GatewayError("not_found", `No user ${id}.`);
    const result = await deps.treasury.grant(ACTOR, id, amount, reason, grantId);
    return sendJson(res, result === "credited" ? 201 : 200, { user_id: id, amount_micros: amount.toString(), result });
  }

  if (resource === "redemption-batches" && !id && method === "POST") {
    const b = await body(req);
    const amount = micros(b.amount_micros, "amount_micros", { positive: true });
    const count = b.count;
    if (typeof count !== "number" || !Number.isInteger(count)) throw new GatewayError("invalid_request", "count must be an integer.", { param: "count" });
    const expiresAt = b.expires_at === undefined || b.expires_at === null ? null : new Date(text(b.expires_at, "expires_at", 40));
    if (expiresAt && Number.isNaN(expiresAt.getTime())) throw new GatewayError("invalid_request", "expires_at must be an ISO 8601 time.", { param: "expires_at" });
    try {
      const batch = await deps.treasury.createRedemptionBatch(ACTOR, { amountMicros: amount, count, note: b.note === undefined ? undefined : text(b.note, "note"), expiresAt });
      return sendJson(res, 201, { batch_id: batch.batchId, amount_micros: amount.toString(), codes: batch.codes });
    } catch (error) {
      if (error instanceof RangeError) throw new GatewayError("invalid_request", error.message);
      throw error;
    }
  }

  if (resource === "payouts" && id && !sub && method === "POST") {
    const b = await body(req);
    if (b.decision !== "paid" && b.decision !== "cancelled") throw new GatewayError("invalid_request", "decision must be paid or cancelled.", { param: "decision" });
    const reference = b.reference === undefined ? undefined : text(b.reference, "reference", 200);
    if (b.decision === "paid" && !reference) throw new GatewayError("invalid_request", "Marking a payout paid needs its payment reference.", { param: "reference" });
    const result = await deps.treasury.decidePayout(ACTOR, id, b.decision, reference);
    if (result === "not_pending") throw new GatewayError("conflict", `Payout ${id} does not exist or was already decided.`);
    return sendJson(res, 200, { id, status: b.decision });
  }

  if (resource === "ledger" && id === "audit" && method === "GET") {
    const report = await deps.ledger.audit();
    return sendJson(res, report.ok ? 200 : 409, { ok: report.ok, problems: report.problems, journal_sum_micros: report.journalSumMicros.toString(), wallets_checked: report.walletsChecked });
  }

  throw new GatewayError("route_not_found", `Unknown admin route: ${method} ${path}.`);
}
