/** The current official price table, cached briefly, looked up by API family and model. */
import { currentPriceTable, type Db, type PriceEntry } from "@wellspring/db/core";
import type { ApiFamily } from "@wellspring/protocol";
import { Cached } from "./cached.ts";
import type { ModelPriceMicros } from "./pricing.ts";

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

interface Loaded extends PriceTable {
  byKey: Map<string, PriceEntry>;
}

export class PriceBook {
  readonly #cache: Cached<Loaded>;

  constructor(db: Db) {
    this.#cache = new Cached(() => load(db), PRICE_CACHE_TTL_MS);
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

async function load(db: Db): Promise<Loaded> {
  const table = await currentPriceTable(db);
  const byKey = new Map<string, PriceEntry>();
  for (const p of table?.prices ?? []) {
    const family: ApiFamily = p.provider === "anthropic" ? "anthropic" : "openai";
    // An OpenAI price applies to the OpenAI family whichever upstream (OpenAI or Azure) serves it.
    if (!byKey.has(`${family}:${p.model}`) || p.provider !== "azure") byKey.set(`${family}:${p.model}`, p);
  }
  return { ver: table?.ver ?? 0, publishedAt: table?.publishedAt ?? new Date(0), prices: table?.prices ?? [], byKey };
}
