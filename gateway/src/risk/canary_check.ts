/**
 * Quality canaries, the pure part: the canary's fixed prompt, the request body per API family, reading the
 * answer, and the checks that tell a model answering as itself from a substitute (docs/ARCHITECTURE.md, "Quality
 * canaries"). The scheduler and the dispatch are in `canary.ts`.
 *
 * Checks, each a problem code:
 * - `model_differs`: the answer's `model` field is not the model the agent offered (a dated snapshot of it, e.g.
 *   `gpt-4o-mini-2024-07-18` for `gpt-4o-mini`, is the same model);
 * - `wrong_answer`: the answer does not contain the random code the prompt asked to be repeated;
 * - `prompt_tokens_out_of_range`: the prompt tokens the usage reports are outside the band of the claimed model's
 *   family around the hub's own o200k count of the canary's text (CANARY_PROMPT_BANDS): another tokenizer, or a
 *   relay that makes up its counts, lands outside it.
 */
import { randomBytes } from "node:crypto";
import type { ApiFamily, Provider } from "@wellspring/protocol";
import { tokenCount } from "../billing/estimate.ts";
import { usageTolerance, type ModelFamily } from "../billing/usage_check.ts";

export type CanaryProblem = "model_differs" | "wrong_answer" | "prompt_tokens_out_of_range";

/** Characters of the random code the canary asks the model to repeat. */
export const CANARY_CODE_CHARS = 10;
/** Output tokens a canary allows a model that answers visibly; a reasoning model gets CANARY_REASONING_OUTPUT_TOKENS_MAX. */
export const CANARY_OUTPUT_TOKENS_MAX = 32;
/** Output tokens a canary allows a model that reasons unseen before it answers (OpenAI o-series and GPT-5). */
export const CANARY_REASONING_OUTPUT_TOKENS_MAX = 1_024;
/** The Anthropic API version header a canary sends. */
const ANTHROPIC_VERSION = "2023-06-01";
const CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/**
 * The band of prompt tokens a model of a family may report for the canary's text of `c` hub (o200k) tokens:
 * [c × lowBps / 10,000, c × highBps / 10,000 + slackTokens]. The slack covers the message framing the API adds
 * (role markers, a few tokens). o200k models count the text exactly, so their band starts at the hub's count;
 * older OpenAI tokenizers and Claude's differ from o200k by up to the ratio. A family the hub knows no tokenizer
 * for (`other`) is not checked on counts.
 */
export const CANARY_PROMPT_BANDS: Readonly<Record<Exclude<ModelFamily, "other">, { lowBps: number; highBps: number; slackTokens: number }>> = {
  openai_o200k: { lowBps: 10_000, highBps: 12_500, slackTokens: 32 },
  openai_cl100k: { lowBps: 8_000, highBps: 15_000, slackTokens: 32 },
  anthropic: { lowBps: 8_000, highBps: 20_000, slackTokens: 64 },
};

/** Models an agent may offer that answer chat: embeddings, audio, images and moderation models get no canary. */
const NOT_CHAT = /^(text-embedding-|whisper-|tts-|dall-e-|gpt-image-|omni-moderation-|text-moderation-|gpt-4o(-mini)?-(transcribe|tts))/;

export function canaryApplies(model: string): boolean {
  return !NOT_CHAT.test(model);
}

/** A new random code for one canary (uppercase letters and digits, no look-alikes). */
export function canaryCode(): string {
  const bytes = randomBytes(CANARY_CODE_CHARS);
  let out = "";
  for (const b of bytes) out += CODE_ALPHABET[b % CODE_ALPHABET.length];
  return out;
}

/**
 * The canary's fixed text around its code. Plain English of a few dozen tokens: long enough that another
 * tokenizer's count moves out of the band, short enough to cost next to nothing.
 */
export function canaryPrompt(code: string): string {
  return (
    "This is an automated quality check of the service that carries your answers. " +
    "Do not explain anything and do not add punctuation or quotes. " +
    `Reply with exactly: ${code}`
  );
}

export interface CanaryRequest {
  api: ApiFamily;
  path: string;
  model: string;
  headers: [string, string][];
  body: Buffer;
  /** The hub's o200k count of the prompt's text. */
  expectedPromptTokens: number;
  /** Tokens the request may use (input estimate and output cap), for the agent's TPM bucket. */
  estimatedTokens: number;
}

/** The canary request for a model offered by `provider` (Azure serves the OpenAI API). */
export function canaryRequest(provider: Provider, model: string, code: string): CanaryRequest {
  const text = canaryPrompt(code);
  const expectedPromptTokens = tokenCount(text);
  const reasons = usageTolerance(model).hiddenReasoning === "reported" && usageTolerance(model).family !== "other";
  const outputMax = reasons ? CANARY_REASONING_OUTPUT_TOKENS_MAX : CANARY_OUTPUT_TOKENS_MAX;
  const messages = [{ role: "user", content: text }];
  if (provider === "anthropic") {
    return {
      api: "anthropic",
      path: "/v1/messages",
      model,
      headers: [
        ["content-type", "application/json"],
        ["anthropic-version", ANTHROPIC_VERSION],
      ],
      body: Buffer.from(JSON.stringify({ model, max_tokens: outputMax, messages })),
      expectedPromptTokens,
      estimatedTokens: expectedPromptTokens + outputMax,
    };
  }
  return {
    api: "openai",
    path: "/v1/chat/completions",
    model,
    headers: [["content-type", "application/json"]],
    body: Buffer.from(JSON.stringify({ model, max_completion_tokens: outputMax, messages })),
    expectedPromptTokens,
    estimatedTokens: expectedPromptTokens + outputMax,
  };
}

/** What a canary's 200 answer said: the model field, its text and its usage. Null fields were absent. */
export interface CanaryAnswer {
  model: string | null;
  text: string;
  promptTokens: number | null;
  completionTokens: number | null;
}

const count = (v: unknown): number | null => (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : null);

/** Reads a non-streamed answer of either API family; null when it is not a JSON object. */
export function readCanaryAnswer(api: ApiFamily, body: Buffer): CanaryAnswer | null {
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch {
    return null;
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return null;
  const o = json as Record<string, unknown>;
  const usage = (typeof o.usage === "object" && o.usage !== null ? o.usage : {}) as Record<string, unknown>;
  const model = typeof o.model === "string" ? o.model : null;
  if (api === "anthropic") {
    const parts = Array.isArray(o.content) ? (o.content as unknown[]) : [];
    const text = parts
      .map((p) => (typeof p === "object" && p !== null && typeof (p as { text?: unknown }).text === "string" ? (p as { text: string }).text : ""))
      .join("");
    // Anthropic's input_tokens leaves out cached input: the prompt is all three.
    const input = count(usage.input_tokens);
    const prompt = input === null ? null : input + (count(usage.cache_read_input_tokens) ?? 0) + (count(usage.cache_creation_input_tokens) ?? 0);
    return { model, text, promptTokens: prompt, completionTokens: count(usage.output_tokens) };
  }
  const choices = Array.isArray(o.choices) ? (o.choices as unknown[]) : [];
  const message = (choices[0] as { message?: { content?: unknown } } | undefined)?.message;
  const text = typeof message?.content === "string" ? message.content : "";
  return { model, text, promptTokens: count(usage.prompt_tokens), completionTokens: count(usage.completion_tokens) };
}

const DATED = /^-(\d{4}-\d{2}-\d{2}|\d{8})$/;

/** The answer's model is the claimed one: the same name, a dated snapshot of it, or the snapshot a `-latest` alias names. */
export function sameModel(claimed: string, answered: string): boolean {
  if (answered === claimed) return true;
  if (answered.startsWith(claimed) && DATED.test(answered.slice(claimed.length))) return true;
  if (claimed.endsWith("-latest")) {
    const base = claimed.slice(0, -"-latest".length);
    return answered.startsWith(base) && DATED.test(answered.slice(base.length));
  }
  return false;
}

/** The prompt tokens a model may report for a text the hub counts `expected` tokens of; null = not checked. */
export function promptTokenBand(model: string, expected: number): { min: number; max: number } | null {
  const family = usageTolerance(model).family;
  if (family === "other") return null;
  const b = CANARY_PROMPT_BANDS[family];
  return { min: Math.floor((expected * b.lowBps) / 10_000), max: Math.ceil((expected * b.highBps) / 10_000) + b.slackTokens };
}

/** The problems of a canary's answer to the code `code`, for the claimed `model`. */
export function canaryProblems(model: string, code: string, expectedPromptTokens: number, answer: CanaryAnswer): CanaryProblem[] {
  const problems: CanaryProblem[] = [];
  if (answer.model === null || !sameModel(model, answer.model)) problems.push("model_differs");
  if (!answer.text.includes(code)) problems.push("wrong_answer");
  const band = promptTokenBand(model, expectedPromptTokens);
  if (band && answer.promptTokens !== null && (answer.promptTokens < band.min || answer.promptTokens > band.max)) problems.push("prompt_tokens_out_of_range");
  return problems;
}
