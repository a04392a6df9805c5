/**
 * The official price table: versioned (`price_ver`, increasing), immutable once published (the database
 * refuses UPDATE and DELETE on published prices). Amounts are micro-USD per million tokens.
 */
import type { Db } from "./client.ts";
import { publishHubEvent } from "./events.ts";

export interface PriceEntry {
  provider: "openai" | "anthropic" | "azure";
  model: string;
  inputMicrosPerMTok: bigint;
  outputMicrosPerMTok: bigint;
  cachedInputMicrosPerMTok: bigint;
  /** Per second of input audio (transcription, translation). */
  audioSecondMicros: bigint;
  /** Per generated image (images the API bills per image). */
  imageMicros: bigint;
  /** Per million input characters (text to speech). */
  characterMicrosPerM: bigint;
}

const usd = (dollars: number): bigint => BigInt(Math.round(dollars * 1_000_000));
const NO_UNITS = { audioSecondMicros: 0n, imageMicros: 0n, characterMicrosPerM: 0n };
const entry = (provider: PriceEntry["provider"], model: string, input: number, output: number, cached: number): PriceEntry => ({
  provider,
  model,
  inputMicrosPerMTok: usd(input),
  outputMicrosPerMTok: usd(output),
  cachedInputMicrosPerMTok: usd(cached),
  ...NO_UNITS,
});
const unitEntry = (model: string, units: { perMinute?: number; perImage?: number; perMChars?: number }): PriceEntry => ({
  provider: "openai",
  model,
  inputMicrosPerMTok: 0n,
  outputMicrosPerMTok: 0n,
  cachedInputMicrosPerMTok: 0n,
  audioSecondMicros: units.perMinute === undefined ? 0n : usd(units.perMinute / 60),
  imageMicros: units.perImage === undefined ? 0n : usd(units.perImage),
  characterMicrosPerM: units.perMChars === undefined ? 0n : usd(units.perMChars),
});

/**
 * Public list prices (USD per 1M tokens: input, output, cached input) of current models, used to seed
 * version 1. Anthropic's cache writes (1.25× input) are billed as input for now; see docs/billing.md.
 */
export const DEFAULT_PRICE_TABLE: readonly PriceEntry[] = [
  entry("openai", "gpt-5", 1.25, 10, 0.125),
  entry("openai", "gpt-5-mini", 0.25, 2, 0.025),
  entry("openai", "gpt-5-nano", 0.05, 0.4, 0.005),
  entry("openai", "gpt-4.1", 2, 8, 0.5),
  entry("openai", "gpt-4.1-mini", 0.4, 1.6, 0.1),
  entry("openai", "gpt-4.1-nano", 0.1, 0.4, 0.025),
  entry("openai", "gpt-4o", 2.5, 10, 1.25),
  entry("openai", "gpt-4o-mini", 0.15, 0.6, 0.075),
  entry("openai", "o3", 2, 8, 0.5),
  entry("openai", "o4-mini", 1.1, 4.4, 0.275),
  entry("openai", "text-embedding-3-small", 0.02, 0, 0.02),
  entry("openai", "text-embedding-3-large", 0.13, 0, 0.13),
  // Billed by other units: audio per minute of input, speech per 1M characters, DALL·E per image (standard
  // quality, 1024×1024); gpt-image-1 reports token usage (text input, image output).
  unitEntry("whisper-1", { perMinute: 0.006 }),
  unitEntry("tts-1", { perMChars: 15 }),
  unitEntry("tts-1-hd", { perMChars: 30 }),
  unitEntry("dall-e-3", { perImage: 0.04 }),
  unitEntry("dall-e-2", { perImage: 0.02 }),
  entry("openai", "gpt-image-1", 5, 40, 1.25),
  entry("anthropic", "claude-opus-4-1", 15, 75, 1.5),
  entry("anthropic", "claude-sonnet-4-5", 3, 15, 0.3),
  entry("anthropic", "claude-haiku-4-5", 1, 5, 0.1),
  entry("anthropic", "claude-3-5-haiku", 0.8, 4, 0.08),
];

/** What runs inside the publishing transaction (the caller's audit event). */
export type InPublication = (tx: Parameters<Parameters<Db["$transaction"]>[0]>[0], ver: number) => Promise<void>;

/**
 * Publishes a new version with these prices; returns its number. Versions only ever increase. `inside` runs in
 * the same transaction (an audit event): if it fails, nothing is published.
 */
export async function publishPriceVersion(db: Db, prices: readonly PriceEntry[], note?: string, inside?: InPublication): Promise<number> {
  return (await publish(db, prices, note ?? null, false, inside))!;
}

/** Publishes DEFAULT_PRICE_TABLE as version 1 when nothing was ever published; returns the version made, or null. */
export async function seedPriceTableIfEmpty(db: Db): Promise<number | null> {
  return publish(db, DEFAULT_PRICE_TABLE, "seed: public list prices", true);
}

async function publish(db: Db, prices: readonly PriceEntry[], note: string | null, onlyIfEmpty: boolean, inside?: InPublication): Promise<number | null> {
  if (prices.length === 0) throw new Error("Cannot publish an empty price table");
  for (const p of prices) {
    if (
      [p.inputMicrosPerMTok, p.outputMicrosPerMTok, p.cachedInputMicrosPerMTok, p.audioSecondMicros, p.imageMicros, p.characterMicrosPerM].some((v) => v < 0n)
    ) {
      throw new Error(`Cannot publish: negative price for ${p.provider}:${p.model}`);
    }
  }
  return db.$transaction(async (tx) => {
    // One publisher at a time: the next number is read and taken under this lock.
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext('wellspring.price_versions'))`;
    const last = await tx.priceVersion.findFirst({ orderBy: { ver: "desc" }, select: { ver: true } });
    if (onlyIfEmpty && last) return null;
    const ver = (last?.ver ?? 0) + 1;
    await tx.priceVersion.create({ data: { ver, note } });
    await tx.modelPrice.createMany({ data: prices.map((p) => ({ ver, ...p })) });
    await inside?.(tx, ver);
    // Every gateway hears of it when (and only if) this commits, and pushes it to its agents.
    await publishHubEvent(tx, { kind: "price_published", ver });
    return ver;
  });
}

/** The newest published version and its prices, or null before the first publication. */
export async function currentPriceTable(db: Db): Promise<{ ver: number; publishedAt: Date; prices: PriceEntry[] } | null> {
  const v = await db.priceVersion.findFirst({ orderBy: { ver: "desc" }, include: { prices: true } });
  if (!v) return null;
  return { ver: v.ver, publishedAt: v.publishedAt, prices: v.prices.map(({ ver: _ver, ...p }) => ({ ...p, provider: p.provider as PriceEntry["provider"] })) };
}
