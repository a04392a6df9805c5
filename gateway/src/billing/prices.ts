/**
 * Prices: the official price table (versioned, cached, looked up by API family and model), what a user pays by
 * their plan, and what an owner earns by their tier — in integers only. Prices are micro-USD per million tokens
 * (and per audio second, image, million characters); coefficients are basis points (1/10,000). Rounding: what a
 * user is charged rounds up to the micro-unit, what an owner earns rounds down, and the platform margin takes the
 * difference — so every settlement balances exactly. Plans and tiers are read from the database and cached
 * briefly; a change published on the hub event channel drops the cache at once.
 */
import { currentPriceTable, type Db, type PriceEntry } from "@wellspring/db/core";
import { BPS, officialCostMicros, type ApiFamily, type ModelPriceMicros, type PriceTableMessage } from "@wellspring/protocol";
import { Cached } from "./cached.ts";
import type { Usage } from "./usage.ts";

export { BPS, officialCostMicros, ownerEarningMicros, TOKENS_PER_PRICE_UNIT, type ModelPriceMicros } from "@wellspring/protocol";

/** The mission's settlement tiers: the share of the official price an owner earns, basis points (the database seeds these; an admin sets the discount lane's). */
export const TIER_BPS = { S: 9_000n, A: 7_000n, discount: 5_000n } as const;

function ceilDiv(a: bigint, b: bigint): bigint {
  return a === 0n ? 0n : (a + b - 1n) / b;
}

/**
 * Batches (OpenAI Batch API, Anthropic Message Batches) are priced at this share of the price table, basis points —
 * the providers' own batch discount, passed on: the user's charge and the official cost the owner's share is taken
 * from are both computed from the table scaled by it (`scaledPrice`).
 */
export const BATCH_PRICE_BPS = 5_000n;

/** A price table entry scaled by `bps` (basis points), each price rounded up to the whole micro-unit. */
export function scaledPrice(price: ModelPriceMicros, bps: bigint): ModelPriceMicros {
  if (bps === BPS) return price;
  const scale = (v: bigint | undefined) => ceilDiv((v ?? 0n) * bps, BPS);
  return {
    inputMicrosPerMTok: scale(price.inputMicrosPerMTok),
    outputMicrosPerMTok: scale(price.outputMicrosPerMTok),
    cachedInputMicrosPerMTok: scale(price.cachedInputMicrosPerMTok),
    audioSecondMicros: scale(price.audioSecondMicros),
    imageMicros: scale(price.imageMicros),
    characterMicrosPerM: scale(price.characterMicrosPerM),
  };
}

/** A plan and an official price both scaled by `bps` for `model` (a batch): the plan's own price for it too. */
export function scaledPricing(
  plan: PlanView,
  api: ApiFamily,
  model: string,
  official: ModelPriceMicros,
  bps: bigint,
): { plan: PlanView; price: ModelPriceMicros } {
  if (bps === BPS) return { plan, price: official };
  const key = `${api}:${model}`;
  const own = plan.overrides.get(key);
  return {
    plan: own ? { ...plan, overrides: new Map([[key, scaledPrice(own, bps)]]) } : plan,
    price: scaledPrice(official, bps),
  };
}

/** What a user on a plan pays for an official cost (plan multiplier in basis points), rounded up. */
export function userChargeMicros(officialMicros: bigint, planBps: bigint): bigint {
  return ceilDiv(officialMicros * planBps, BPS);
}

/** How long a loaded table is used before the next read, ms; a publish event replaces it at once. */
export const PRICE_CACHE_TTL_MS = 5_000;

export interface PricedModel {
  ver: number;
  price: ModelPriceMicros;
}

export interface PriceTable {
  ver: number;
  publishedAt: Date;
  prices: PriceEntry[];
}

interface LoadedTable extends PriceTable {
  byKey: Map<string, PriceEntry>;
}

export class PriceBook {
  readonly #cache: Cached<LoadedTable>;

  constructor(db: Db) {
    this.#cache = new Cached(() => loadTable(db), PRICE_CACHE_TTL_MS);
  }

  /** Forget the cached table (a new version was published); the next read loads it. */
  invalidate(): void {
    this.#cache.invalidate();
  }

  /** The current version and all its prices. */
  async current(): Promise<PriceTable> {
    const t = await this.#cache.get();
    return { ver: t.ver, publishedAt: t.publishedAt, prices: t.prices };
  }

  async get(api: ApiFamily, model: string): Promise<PricedModel | null> {
    const t = await this.#cache.get();
    const p = t.byKey.get(`${api}:${model}`);
    return p ? { ver: t.ver, price: p } : null;
  }
}

/** The official table as the tunnel carries it to agents (CONTROL `PRICE_TABLE`; amounts as decimal strings). */
export function priceTableMessage(t: PriceTable): PriceTableMessage {
  return {
    ver: t.ver,
    publishedAt: t.publishedAt.toISOString(),
    prices: t.prices.map((p) => ({
      provider: p.provider,
      model: p.model,
      inputMicrosPerMTok: p.inputMicrosPerMTok.toString(),
      outputMicrosPerMTok: p.outputMicrosPerMTok.toString(),
      cachedInputMicrosPerMTok: p.cachedInputMicrosPerMTok.toString(),
      audioSecondMicros: p.audioSecondMicros.toString(),
      imageMicros: p.imageMicros.toString(),
      characterMicrosPerM: p.characterMicrosPerM.toString(),
    })),
  };
}

async function loadTable(db: Db): Promise<LoadedTable> {
  const table = await currentPriceTable(db);
  const byKey = new Map<string, PriceEntry>();
  for (const p of table?.prices ?? []) {
    const family: ApiFamily = p.provider === "anthropic" ? "anthropic" : "openai";
    // An OpenAI price applies to the OpenAI family whichever upstream (OpenAI or Azure) serves it.
    if (!byKey.has(`${family}:${p.model}`) || p.provider !== "azure") byKey.set(`${family}:${p.model}`, p);
  }
  return { ver: table?.ver ?? 0, publishedAt: table?.publishedAt ?? new Date(0), prices: table?.prices ?? [], byKey };
}

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
    ? {
        ...scaled,
        inputMicrosPerMTok: own.inputMicrosPerMTok,
        outputMicrosPerMTok: own.outputMicrosPerMTok,
        cachedInputMicrosPerMTok: own.cachedInputMicrosPerMTok,
      }
    : scaled;
}

const FALLBACK_PLAN: PlanView = { id: "plan_standard", name: "Standard", kind: "standard", multiplierBps: BPS, overrides: new Map() };
const FALLBACK_TIERS: Record<Tier, bigint> = { ...TIER_BPS };

interface LoadedTariffs {
  plans: Map<string, PlanView>;
  defaultPlan: PlanView;
  tiers: Record<Tier, bigint>;
}

export class Tariffs {
  readonly #cache: Cached<LoadedTariffs>;

  constructor(db: Db) {
    this.#cache = new Cached(() => loadTariffs(db), TARIFF_CACHE_TTL_MS);
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

async function loadTariffs(db: Db): Promise<LoadedTariffs> {
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
