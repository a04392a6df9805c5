import "server-only";
import { currentPriceTable, type PriceEntry } from "@wellspring/db/core";
import { planPrice, publishPrices, Tariffs } from "@wellspring/gateway";
import { db } from "../db";
import { parseUsd, rate } from "../format";
import { requireAdmin, type Actor } from "./actor";

export interface PriceVersionSummary {
  ver: number;
  publishedAt: Date;
  note: string | null;
  models: number;
}

export async function priceHistory(): Promise<PriceVersionSummary[]> {
  const versions = await db().priceVersion.findMany({ orderBy: { ver: "desc" }, take: 50, include: { _count: { select: { prices: true } } } });
  return versions.map((v) => ({ ver: v.ver, publishedAt: v.publishedAt, note: v.note, models: v._count.prices }));
}

export async function currentPrices(): Promise<{ ver: number; publishedAt: Date; prices: PriceEntry[] } | null> {
  return currentPriceTable(db());
}

/** The signed-in user's own prices: the official table through their plan. */
export async function myPrices(actor: Actor): Promise<{ ver: number; plan: string; rows: (PriceEntry & { mine: ReturnType<typeof planPrice> })[] } | null> {
  const table = await currentPriceTable(db());
  if (!table) return null;
  const user = await db().user.findUniqueOrThrow({ where: { id: actor.userId }, select: { planId: true } });
  // The same plan resolution the gateway charges by (own plan, else the default plan).
  const plan = await new Tariffs(db()).plan(user.planId);
  return {
    ver: table.ver,
    plan: plan.name,
    rows: table.prices.map((e) => ({ ...e, mine: planPrice(plan, e.provider === "anthropic" ? "anthropic" : "openai", e.model, e) })),
  };
}

const FIELDS = ["inputMicrosPerMTok", "outputMicrosPerMTok", "cachedInputMicrosPerMTok", "audioSecondMicros", "imageMicros", "characterMicrosPerM"] as const;

/**
 * Parses a draft table edited as text, one model per line:
 * `provider model input output cached [audio_second image character_per_m]` — USD per 1M tokens (and per
 * second / image / 1M characters), up to 6 decimals. Returns the entries or the first line's problem.
 */
export function parseDraft(text: string): { ok: true; entries: PriceEntry[] } | { ok: false; error: string } {
  const entries: PriceEntry[] = [];
  const seen = new Set<string>();
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  for (const [i, line] of lines.entries()) {
    const parts = line.split(/\s+/);
    const [provider, model, ...amounts] = parts;
    if (provider !== "openai" && provider !== "anthropic" && provider !== "azure")
      return { ok: false, error: `Line ${i + 1}: the provider must be openai, anthropic or azure.` };
    if (!model || !/^[\w.:/@-]{1,256}$/.test(model)) return { ok: false, error: `Line ${i + 1}: "${model ?? ""}" is not a model name.` };
    if (amounts.length !== 3 && amounts.length !== 6)
      return { ok: false, error: `Line ${i + 1}: give 3 prices (input output cached) or 6 (… audio_second image character).` };
    const micros: bigint[] = [];
    for (const a of amounts) {
      const v = parseUsd(a);
      if (v === null) return { ok: false, error: `Line ${i + 1}: "${a}" is not an amount in dollars (up to 6 decimals).` };
      micros.push(v);
    }
    if (seen.has(`${provider}:${model}`)) return { ok: false, error: `Line ${i + 1}: ${provider} ${model} is listed twice.` };
    seen.add(`${provider}:${model}`);
    const [input, output, cached, audio = 0n, image = 0n, chars = 0n] = micros;
    entries.push({
      provider,
      model,
      inputMicrosPerMTok: input!,
      outputMicrosPerMTok: output!,
      cachedInputMicrosPerMTok: cached!,
      audioSecondMicros: audio,
      imageMicros: image,
      characterMicrosPerM: chars,
    });
  }
  if (entries.length === 0) return { ok: false, error: "The table is empty." };
  return { ok: true, entries };
}

/** The current table as draft text (what the editor starts from). */
export function draftText(prices: PriceEntry[]): string {
  return prices
    .map((p) => {
      const base = [p.provider, p.model, rate(p.inputMicrosPerMTok), rate(p.outputMicrosPerMTok), rate(p.cachedInputMicrosPerMTok)];
      const units =
        p.audioSecondMicros || p.imageMicros || p.characterMicrosPerM ? [rate(p.audioSecondMicros), rate(p.imageMicros), rate(p.characterMicrosPerM)] : [];
      return [...base, ...units].join(" ");
    })
    .join("\n");
}

export type DiffRow = { key: string; change: "added" | "removed" | "changed"; before?: PriceEntry; after?: PriceEntry };

export function diffTables(before: PriceEntry[], after: PriceEntry[]): DiffRow[] {
  const b = new Map(before.map((p) => [`${p.provider}:${p.model}`, p]));
  const a = new Map(after.map((p) => [`${p.provider}:${p.model}`, p]));
  const rows: DiffRow[] = [];
  for (const [key, p] of a) {
    const old = b.get(key);
    if (!old) rows.push({ key, change: "added", after: p });
    else if (FIELDS.some((f) => old[f] !== p[f])) rows.push({ key, change: "changed", before: old, after: p });
  }
  for (const [key, p] of b) if (!a.has(key)) rows.push({ key, change: "removed", before: p });
  return rows.sort((x, y) => x.key.localeCompare(y.key));
}

export async function publishDraft(actor: Actor, entries: PriceEntry[], note: string): Promise<number> {
  requireAdmin(actor);
  return publishPrices(db(), `user:${actor.userId}`, entries, note || undefined);
}
