/**
 * The official price table the hub pushed (PRICE_TABLE), kept in memory and in `<data>/state/prices.json`
 * so the agent's own accounting settles against the same version as the hub's. Versions only move forward:
 * an older table (a reconnect racing a publication) is ignored and the held version acknowledged.
 * Agents before the state folder kept it in `<data>/prices.json`: that file is read once, when the state
 * folder has none, and copied there (the agent may not write the data folder itself).
 */
import type { PriceTableMessage } from "../../protocol/src/mod.ts";
import type { Log } from "./log.ts";

export class PriceStore {
  #table: PriceTableMessage | null = null;

  /** `dir` holds prices.json (the agent's state folder); `legacyDir`, if given, is where an older agent kept it. */
  constructor(
    private readonly dir: string,
    private readonly log: Log,
    private readonly legacyDir: string | null = null,
  ) {}

  get ver(): number | null {
    return this.#table?.ver ?? null;
  }

  get table(): PriceTableMessage | null {
    return this.#table;
  }

  /** Loads the table kept from the last run, if any. */
  async load(): Promise<void> {
    this.#table = await this.#read(`${this.dir}/prices.json`);
    if (this.#table || !this.legacyDir) return;
    const legacy = await this.#read(`${this.legacyDir}/prices.json`);
    if (legacy) await this.accept(legacy);
  }

  async #read(path: string): Promise<PriceTableMessage | null> {
    try {
      const saved = JSON.parse(await Deno.readTextFile(path)) as PriceTableMessage;
      if (Number.isSafeInteger(saved.ver) && Array.isArray(saved.prices)) return saved;
    } catch {
      /* none yet: the hub sends it on connect */
    }
    return null;
  }

  /** Takes a pushed table; returns the version now held (what the agent acknowledges). */
  async accept(table: PriceTableMessage): Promise<number> {
    if (this.#table && table.ver <= this.#table.ver) return this.#table.ver;
    this.#table = table;
    const path = `${this.dir}/prices.json`;
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
