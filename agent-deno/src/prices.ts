/**
 * The official price table the hub pushed (PRICE_TABLE), kept in memory and in `<data>/prices.json` so
 * the agent's own accounting settles against the same version as the hub's. Versions only move forward:
 * an older table (a reconnect racing a publication) is ignored and the held version acknowledged.
 */
import type { PriceTableMessage } from "../../protocol/src/mod.ts";
import type { Log } from "./log.ts";

export class PriceStore {
  #table: PriceTableMessage | null = null;

  constructor(private readonly dataDir: string, private readonly log: Log) {}

  get ver(): number | null {
    return this.#table?.ver ?? null;
  }

  get table(): PriceTableMessage | null {
    return this.#table;
  }

  /** Loads the table kept from the last run, if any. */
  async load(): Promise<void> {
    try {
      const saved = JSON.parse(await Deno.readTextFile(`${this.dataDir}/prices.json`)) as PriceTableMessage;
      if (Number.isSafeInteger(saved.ver) && Array.isArray(saved.prices)) this.#table = saved;
    } catch {
      /* none yet: the hub sends it on connect */
    }
  }

  /** Takes a pushed table; returns the version now held (what the agent acknowledges). */
  async accept(table: PriceTableMessage): Promise<number> {
    if (this.#table && table.ver <= this.#table.ver) return this.#table.ver;
    this.#table = table;
    const path = `${this.dataDir}/prices.json`;
    try {
      await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(table));
      await Deno.rename(`${path}.tmp`, path);
    } catch (error) {
      this.log.warn("agent.prices_not_saved", { error: (error as Error).message });
    }
    this.log.info("agent.prices", { ver: table.ver, models: table.prices.length });
    return table.ver;
  }
}
