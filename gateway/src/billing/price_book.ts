/** The current official price table, cached briefly, looked up by API family and model. */
import { currentPriceTable, type Db, type PriceEntry } from "@wellspring/db";
import type { ApiFamily } from "@wellspring/protocol";
import type { ModelPriceMicros } from "./pricing.ts";

/** How long a loaded table is used before the next read; a newly published version applies within this. */
export const PRICE_CACHE_TTL_MS = 5_000;

export interface PricedModel {
  ver: number;
  price: ModelPriceMicros;
}

export class PriceBook {
  #loaded: { at: number; ver: number; byKey: Map<string, PriceEntry> } | null = null;

  constructor(private readonly db: Db) {}

  async get(api: ApiFamily, model: string): Promise<PricedModel | null> {
    if (!this.#loaded || Date.now() - this.#loaded.at > PRICE_CACHE_TTL_MS) {
      const table = await currentPriceTable(this.db);
      const byKey = new Map<string, PriceEntry>();
      for (const p of table?.prices ?? []) {
        const family: ApiFamily = p.provider === "anthropic" ? "anthropic" : "openai";
        // An OpenAI price applies to the OpenAI family whichever upstream (OpenAI or Azure) serves it.
        if (!byKey.has(`${family}:${p.model}`) || p.provider !== "azure") byKey.set(`${family}:${p.model}`, p);
      }
      this.#loaded = { at: Date.now(), ver: table?.ver ?? 0, byKey };
    }
    const p = this.#loaded.byKey.get(`${api}:${model}`);
    return p ? { ver: this.#loaded.ver, price: p } : null;
  }
}
