/**
 * The most a request can use, from what its body says and what is known of its model — what a request holds
 * against the user's balance while it runs (docs/billing.md, "Reservation"). It is a true upper bound for every
 * model in the limits table below: input ≤ the body's bytes (every token is at least one byte) plus an allowance
 * per inline image, or the model's whole context window when the request points at content the hub cannot see
 * (an earlier response, a stored or remote file, a remote image); output ≤ the request's cap (or the model's
 * output maximum) × the results it asks for (`n`, `best_of`). Usage beyond it is still charged in full
 * (`wellspring_settle_batch`): the bound only decides what is held, never what is paid.
 */
import type { BodyFields } from "@wellspring/protocol";
import type { Usage } from "./usage.ts";

/** How a route is billed: its unit decides which fields bound it. */
export type BillingUnit = "tokens" | "input_tokens" | "images" | "transcription" | "speech" | "free";

export interface ModelLimits {
  /** Largest input (prompt) the model accepts, tokens. */
  contextTokens: number;
  /** Largest output one result may have, tokens (reasoning included); for image models, tokens per image. */
  outputTokensMax: number;
  /** False when the model is not in the table: the bounds are the configured defaults, not the model's. */
  known: boolean;
}

/** Tokens an inline image may cost beyond its bytes (a small image is billed as at least one tile or patch grid). */
export const IMAGE_PART_TOKENS_MAX = 3_000;
/** Context window assumed for a model not in the table, tokens. */
export const CONTEXT_TOKENS_DEFAULT = 200_000;
/** Audio is assumed to use at least this many bytes per second (8 kbit/s): bounds seconds billed by the upload's size. */
export const AUDIO_BYTES_PER_SECOND_MIN = 1_000;
/** Images a multipart request may ask for when its `n` field is absent (the APIs' maximum). */
export const IMAGES_PER_REQUEST_MAX = 10;

/**
 * Public limits of current models (context window and output maximum), matched by name prefix, most specific
 * first. A model not listed is bounded by `CONTEXT_TOKENS_DEFAULT` and the gateway's default output cap.
 */
const LIMITS: readonly [prefix: string, contextTokens: number, outputTokensMax: number][] = [
  ["gpt-5", 400_000, 128_000],
  ["gpt-4.1", 1_047_576, 32_768],
  ["gpt-4o-mini-tts", 2_000, 16_384],
  ["gpt-4o-transcribe", 16_000, 2_000],
  ["gpt-4o-mini-transcribe", 16_000, 2_000],
  ["gpt-4o", 128_000, 16_384],
  ["o1-mini", 128_000, 65_536],
  ["o1", 200_000, 100_000],
  ["o3", 200_000, 100_000],
  ["o4-mini", 200_000, 100_000],
  ["gpt-image-1", 32_000, 6_240],
  ["text-embedding-3", 8_192, 0],
  ["text-embedding-ada-002", 8_192, 0],
  ["claude-opus-4", 200_000, 32_000],
  ["claude-sonnet-4", 200_000, 64_000],
  ["claude-haiku-4", 200_000, 64_000],
  ["claude-3-7-sonnet", 200_000, 64_000],
  ["claude-3-5-haiku", 200_000, 8_192],
];

export function modelLimits(model: string, defaultOutputTokens: number): ModelLimits {
  for (const [prefix, contextTokens, outputTokensMax] of LIMITS) {
    if (model === prefix || model.startsWith(`${prefix}-`) || model.startsWith(`${prefix}.`)) return { contextTokens, outputTokensMax, known: true };
  }
  return { contextTokens: CONTEXT_TOKENS_DEFAULT, outputTokensMax: defaultOutputTokens, known: false };
}

const NONE: Usage = { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 };

/**
 * The most a request may use. `inputBytes` is the body's size when known (Content-Length, or the whole body
 * read), else the bytes received so far — the caller grows the hold as more arrive.
 */
export function worstUsage(unit: BillingUnit, multipart: boolean, fields: BodyFields, inputBytes: number, limits: ModelLimits): Usage {
  if (unit === "free") return NONE;
  const bodyInput = inputBytes + fields.imageParts * IMAGE_PART_TOKENS_MAX;
  // A body that points elsewhere may bring a whole context window of input; otherwise its bytes bound it (and
  // a known model's window bounds that: a provider refuses a longer prompt unbilled).
  const inputTokens = fields.references ? Math.max(bodyInput, limits.contextTokens) : limits.known ? Math.min(bodyInput, limits.contextTokens) : bodyInput;
  const results = Math.max(fields.n ?? 1, fields.bestOf ?? 1, 1);
  const perResult = fields.maxOutputTokens ?? limits.outputTokensMax;
  switch (unit) {
    case "tokens":
      return { inputTokens, outputTokens: perResult * results, cachedInputTokens: 0 };
    case "input_tokens":
      return { inputTokens, outputTokens: 0, cachedInputTokens: 0 };
    case "images": {
      const images = fields.n ?? (multipart ? IMAGES_PER_REQUEST_MAX : 1);
      return { inputTokens, outputTokens: limits.outputTokensMax * images, cachedInputTokens: 0, images };
    }
    case "transcription":
      return { inputTokens, outputTokens: limits.outputTokensMax, cachedInputTokens: 0, audioSeconds: Math.ceil(inputBytes / AUDIO_BYTES_PER_SECOND_MIN) };
    case "speech":
      return { inputTokens, outputTokens: limits.outputTokensMax, cachedInputTokens: 0, characters: fields.inputChars ?? inputBytes };
  }
}
