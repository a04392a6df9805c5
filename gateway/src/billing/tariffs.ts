/**
 * Plans (what users pay) and tier coefficients (what owners earn), read from the database and cached
 * briefly; a change published on the event channel drops the cache at once.
 */
import type { Db } from "@wellspring/db/core";
import type { ApiFamily } from "@wellspring/protocol";
import { Cached } from "./cached.ts";
import { BPS, officialCostMicros, TIER_BPS, userChargeMicros, type ModelPriceMicros } from "./pricing.ts";
import type { Usage } from "./usage.ts";

/** How long plans and tiers are used before they are read again, ms (a change event drops them sooner). */
export const TARIFF_CACHE_TTL_MS = 5_000;

export type Tier = "S" | "A" | "discount";

export interface PlanView {
  id: string;
  name: string;
  kind: string;
  multiplierBps: bigint;
  overrides: Map<string, ModelPriceMicros>;
}

/** What a user on `plan` pays for `usage` of a model whose official price is `official`. */
export function planChargeMicros(plan: PlanView, api: ApiFamily, model: string, official: ModelPriceMicros, usage: Usage): bigint {
  const own = plan.overrides.get(`${api}:${model}`);
  return own ? officialCostMicros(usage, planPrice(plan, api, model, official)) : userChargeMicros(officialCostMicros(usage, official), plan.multiplierBps);
}

/**
 * A plan's effective prices for a model (for display, and for plans with their own price for it): the
 * plan's own token prices when it has them, every other price the official one × the multiplier (rounded up).
 */
export function planPrice(plan: PlanView, api: ApiFamily, model: string, official: ModelPriceMicros): ModelPriceMicros {
  const scale = (v: bigint | undefined) => ((v ?? 0n) * plan.multiplierBps + BPS - 1n) / BPS;
  const scaled: ModelPriceMicros = {
    inputMicrosPerMTok: scale(official.inputMicrosPerMTok),
    outputMicrosPerMTok: scale(official.outputMicrosPerMTok),
    cachedInputMicrosPerMTok: scale(official.cachedInputMicrosPerMTok),
    audioSecondMicros: scale(official.audioSecondMicros),
    imageMicros: scale(official.imageMicros),
    characterMicrosPerM: scale(official.characterMicrosPerM),
  };
  const own = plan.overrides.get(`${api}:${model}`);
  return own
    ? { ...scaled, inputMicrosPerMTok: own.inputMicrosPerMTok, outputMicrosPerMTok: own.outputMicrosPerMTok, cachedInputMicrosPerMTok: own.cachedInputMicrosPerMTok }
    : scaled;
}

const FALLBACK_PLAN: PlanView = { id: "plan_standard", name: "Standard", kind: "standard", multiplierBps: BPS, overrides: new Map() };
const FALLBACK_TIERS: Record<Tier, bigint> = { ...TIER_BPS };

interface Loaded {
  plans: Map<string, PlanView>;
  defaultPlan: PlanView;
  tiers: Record<Tier, bigint>;
}

export class Tariffs {
  readonly #cache: Cached<Loaded>;

  constructor(db: Db) {
    this.#cache = new Cached(() => load(db), TARIFF_CACHE_TTL_MS);
  }

  invalidate(): void {
    this.#cache.invalidate();
  }

  /** The plan a user pays by (their own, else the default plan). */
  async plan(planId: string | null): Promise<PlanView> {
    const t = await this.#cache.get();
    return (planId ? t.plans.get(planId) : undefined) ?? t.defaultPlan;
  }

  /** The owner share of a tier, basis points. */
  async tierBps(tier: Tier): Promise<bigint> {
    return (await this.#cache.get()).tiers[tier];
  }
}

async function load(db: Db): Promise<Loaded> {
  const [plans, tiers] = await Promise.all([db.plan.findMany({ include: { overrides: true } }), db.tierCoefficient.findMany()]);
  const byId = new Map<string, PlanView>();
  let defaultPlan: PlanView | null = null;
  for (const p of plans) {
    const view: PlanView = {
      id: p.id,
      name: p.name,
      kind: p.kind,
      multiplierBps: BigInt(p.multiplierBps),
      overrides: new Map(p.overrides.map((o) => [`${o.api}:${o.model}`, o])),
    };
    byId.set(p.id, view);
    if (p.isDefault) defaultPlan = view;
  }
  const tierBps = { ...FALLBACK_TIERS };
  for (const t of tiers) tierBps[t.tier] = BigInt(t.bps);
  return { plans: byId, defaultPlan: defaultPlan ?? FALLBACK_PLAN, tiers: tierBps };
}
