/**
 * Reads token usage from a response as its bytes pass to the user, without changing or holding them:
 * OpenAI chat/completions SSE (`stream_options.include_usage`), Responses API events (`response.completed`),
 * Anthropic `message_start` / `message_delta`, and non-streaming JSON bodies (chat, completions, responses,
 * embeddings, messages). Memory is bounded: one partial SSE line (≤ LINE_BYTES_MAX) or the body's tail
 * (≤ TAIL_BYTES_MAX) for JSON.
 */
import { concatBytes as concat } from "@wellspring/protocol";
import { RequestTokenEstimator, StreamedTokenCounter } from "./estimate.ts";
import type { Usage } from "./usage.ts";

export type { Usage } from "./usage.ts";

/** Longest SSE line examined; longer lines (large content deltas) are skipped, never buffered. */
export const LINE_BYTES_MAX = 256 * 1024;
/** Bytes kept from the end of a JSON body, where every provider puts `usage`. */
export const TAIL_BYTES_MAX = 64 * 1024;

/**
 * One decoder for every tap: each call decodes a whole buffer (never `stream: true`), so sharing it is safe, and a
 * decoder's first decode costs tens of µs in Node (it sets up its converter) — per response, if each had its own.
 */
const UTF8 = new TextDecoder();

type Json = Record<string, unknown>;
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0);
const obj = (v: unknown): Json | null => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : null);

/** `reasoning_tokens` of an OpenAI output details object, when there are any. */
function reasoning(details: Json | null): { reasoningTokens?: number } {
  const tokens = num(details?.reasoning_tokens);
  return tokens > 0 ? { reasoningTokens: tokens } : {};
}

/** Usage from any of the providers' usage objects (OpenAI chat/embeddings, Responses, Anthropic). */
export function usageFromObject(u: Json): Usage | null {
  if (u.type === "duration" && typeof u.seconds === "number" && Number.isFinite(u.seconds) && u.seconds >= 0) {
    return { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, audioSeconds: Math.ceil(u.seconds) };
  }
  if ("prompt_tokens" in u || "completion_tokens" in u) {
    return {
      inputTokens: num(u.prompt_tokens),
      outputTokens: num(u.completion_tokens),
      cachedInputTokens: num(obj(u.prompt_tokens_details)?.cached_tokens),
      ...reasoning(obj(u.completion_tokens_details)),
    };
  }
  if ("input_tokens" in u || "output_tokens" in u) {
    // Responses API: input_tokens includes cached ones. Anthropic: input_tokens excludes cache reads/writes.
    const details = obj(u.input_tokens_details);
    if (details)
      return {
        inputTokens: num(u.input_tokens),
        outputTokens: num(u.output_tokens),
        cachedInputTokens: num(details.cached_tokens),
        ...reasoning(obj(u.output_tokens_details)),
      };
    const cacheRead = num(u.cache_read_input_tokens);
    const cacheWrite = num(u.cache_creation_input_tokens);
    return { inputTokens: num(u.input_tokens) + cacheRead + cacheWrite, outputTokens: num(u.output_tokens), cachedInputTokens: cacheRead };
  }
  return null;
}

export interface UsageTap {
  push(chunk: Uint8Array): void;
  /** The usage the provider reported, or null if it reported none (the stream was cut, or not asked). */
  result(): Usage | null;
  /** Input usage reported before the output (Anthropic's `message_start`), for a stream that was cut. */
  reportedInput(): Usage | null;
  /**
   * Tokens of the generated text that passed through, by tokenizer: for streams, every delta delivered;
   * for a JSON body, null (a cut JSON body delivers no usable output).
   */
  streamedOutputTokens(): number | null;
  /** Images in a JSON body (`"b64_json"` / `"url"` entries of an images response); 0 for streams. */
  images(): number;
  /**
   * Output tokens the hub counted itself, for checking reported usage: the delivered deltas of a stream, or the
   * text of a whole JSON body (keys and ids included, so it leans high); null when not counted.
   */
  countedOutputTokens(): number | null;
  /** At most `countedOutputTokens()`, without the tokenizer (null exactly when that is null). */
  countedOutputTokensLowerBound(): number | null;
  /** The response carried a thinking block (Claude bills thinking it only summarises). */
  thinkingSeen(): boolean;
}

class SseTap implements UsageTap {
  #partial: Uint8Array[] = [];
  #partialBytes = 0;
  /** Set when the current line outgrew LINE_BYTES_MAX: only its head and a rolling tail are kept. */
  #long: { head: string; tail: TailBuffer } | null = null;
  #usage: Usage | null = null;
  #anthropicInput: Usage | null = null;
  readonly #output = new StreamedTokenCounter();

  push(chunk: Uint8Array): void {
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] !== 0x0a) continue;
      this.#take(chunk.subarray(start, i));
      this.#endLine();
      start = i + 1;
    }
    if (start < chunk.length) this.#take(chunk.subarray(start));
  }

  #take(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.#long) {
      this.#long.tail.push(bytes);
      return;
    }
    if (this.#partialBytes + bytes.length <= LINE_BYTES_MAX) {
      this.#partial.push(bytes.slice());
      this.#partialBytes += bytes.length;
      return;
    }
    // A large event (e.g. response.completed repeating a long output): keep where its type is and its tail,
    // where the usage object is.
    const head = UTF8.decode(concat([...this.#partial, bytes.subarray(0, 512)]).subarray(0, 512));
    const tail = new TailBuffer();
    for (const p of this.#partial) tail.push(p);
    tail.push(bytes);
    this.#long = { head, tail };
    this.#partial = [];
    this.#partialBytes = 0;
  }

  #endLine(): void {
    const parts = this.#partial;
    const long = this.#long;
    this.#partial = [];
    this.#partialBytes = 0;
    this.#long = null;
    if (long) {
      if (!long.head.startsWith("data:")) return;
      const type = /"type"\s*:\s*"([^"]+)"/.exec(long.head)?.[1];
      const usage = lastUsageIn(UTF8.decode(long.tail.bytes()));
      // Only the events that carry final usage count (Anthropic's usage events are always small).
      if (usage && (type === "response.completed" || type === "response.incomplete" || type === "response.failed" || type === undefined)) this.#usage = usage;
      return;
    }
    if (parts.length === 0) return;
    const bytes = parts.length === 1 ? parts[0]! : concat(parts);
    // `data:` lines go to the output counter (kept as bytes; parsed only in batches or when needed).
    if (bytes[0] === 0x64 && bytes[4] === 0x3a && bytes[1] === 0x61) this.#output.line(bytes.subarray(5));
    // Most lines are content deltas: look for the field name in the bytes before decoding anything.
    if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf("_tokens") < 0) return;
    let line = UTF8.decode(bytes);
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (!line.startsWith("data:")) return;
    let data: Json | null;
    try {
      data = obj(JSON.parse(line.slice(5).trimStart()));
    } catch {
      return;
    }
    if (!data) return;
    this.#onEvent(data);
  }

  #onEvent(data: Json): void {
    // Anthropic: input in message_start, cumulative output in message_delta.
    if (data.type === "message_start") {
      const u = obj(obj(data.message)?.usage);
      if (u) this.#anthropicInput = usageFromObject(u);
      return;
    }
    if (data.type === "message_delta") {
      const u = obj(data.usage);
      if (!u) return;
      const input = this.#anthropicInput ?? { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 };
      // message_delta may repeat input counts (newer API versions); prefer them when present.
      const delta = usageFromObject({ ...u, input_tokens: u.input_tokens ?? 0 });
      this.#usage = {
        inputTokens: "input_tokens" in u ? delta!.inputTokens : input.inputTokens,
        outputTokens: num(u.output_tokens),
        cachedInputTokens: "cache_read_input_tokens" in u ? delta!.cachedInputTokens : input.cachedInputTokens,
      };
      return;
    }
    // Responses API: the final response carries usage.
    if (typeof data.type === "string" && data.type.startsWith("response.")) {
      const u = obj(obj(data.response)?.usage);
      if (u && (data.type === "response.completed" || data.type === "response.incomplete" || data.type === "response.failed")) {
        this.#usage = usageFromObject(u);
      }
      return;
    }
    // OpenAI chat / completions: a chunk with a non-null usage.
    const u = obj(data.usage);
    if (u) this.#usage = usageFromObject(u);
  }

  result(): Usage | null {
    return this.#usage;
  }

  reportedInput(): Usage | null {
    return this.#anthropicInput;
  }

  streamedOutputTokens(): number {
    return this.#output.total();
  }

  images(): number {
    return 0;
  }

  countedOutputTokens(): number {
    return this.#output.total();
  }

  countedOutputTokensLowerBound(): number {
    return this.#output.lowerBound();
  }

  thinkingSeen(): boolean {
    return this.#output.thinkingSeen();
  }
}

/** The last TAIL_BYTES_MAX bytes pushed into it. */
class TailBuffer {
  #parts: Uint8Array[] = [];
  #bytes = 0;

  push(chunk: Uint8Array): void {
    this.#parts.push(chunk.slice(Math.max(0, chunk.length - TAIL_BYTES_MAX)));
    this.#bytes += Math.min(chunk.length, TAIL_BYTES_MAX);
    while (this.#parts.length > 1 && this.#bytes - this.#parts[0]!.length >= TAIL_BYTES_MAX) {
      this.#bytes -= this.#parts.shift()!.length;
    }
  }

  bytes(): Uint8Array {
    return concat(this.#parts);
  }
}

/** The last `"usage": { … }` object in `text` that reads as a usage object. */
function lastUsageIn(text: string): Usage | null {
  for (let at = text.lastIndexOf('"usage"'); at >= 0; at = text.lastIndexOf('"usage"', at - 1)) {
    const open = text.indexOf("{", at);
    if (open < 0) continue;
    const close = matchingBrace(text, open);
    if (close < 0) continue;
    try {
      const u = obj(JSON.parse(text.slice(open, close + 1)));
      const usage = u ? usageFromObject(u) : null;
      if (usage) return usage;
    } catch {
      /* not JSON at this position; keep looking */
    }
  }
  return null;
}

/** Keys that hold one generated image each in an images response. Base64 and URLs cannot contain a quote. */
const IMAGE_KEYS = ['"b64_json"', '"url"'];
const IMAGE_KEY_BYTES_MAX = 10;

/**
 * Generated base64 in a JSON body (an image from gpt-image-1, text a model wrote in base64) is not tokenized: it
 * counts one token per this many bytes, high enough that an honest provider's count is never capped. Bytes.
 */
export const UNMEASURED_OUTPUT_BYTES_PER_TOKEN = 2;

/** How a thinking block is marked in a JSON body (`"type":"thinking"` / `"redacted_thinking"`; a quote inside text is escaped). */
const THINKING = '"thinking"';
const THINKING_REDACTED = '"redacted_thinking"';

class JsonTailTap implements UsageTap {
  readonly #tail = new TailBuffer();
  /** The last bytes of the previous chunk, so a key split across chunks is still found. */
  #carry = "";
  #images = 0;
  /** Counts the body's text when its reported usage is to be checked. */
  readonly #output: RequestTokenEstimator | null;
  #thinkingCarry = "";
  #thinking = false;
  /** `result()` of the bytes pushed so far; undefined until read. */
  #result: Usage | null | undefined = undefined;

  /**
   * `countImages`: scan for images (only image responses need it; it reads every byte). `countOutput`: count the
   * body's text tokens (it reads every byte).
   */
  constructor(
    private readonly countImages: boolean,
    countOutput: boolean,
  ) {
    this.#output = countOutput ? new RequestTokenEstimator() : null;
  }

  push(chunk: Uint8Array): void {
    this.#result = undefined;
    this.#tail.push(chunk);
    if (this.#output) {
      this.#output.push(chunk);
      if (!this.#thinking) {
        const text = this.#thinkingCarry + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("latin1");
        this.#thinking = text.includes(THINKING) || text.includes(THINKING_REDACTED);
        this.#thinkingCarry = text.slice(-(THINKING_REDACTED.length - 1));
      }
    }
    if (!this.countImages) return;
    // Count image keys without decoding the (large) base64 text: latin1 keeps byte offsets.
    const text = this.#carry + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("latin1");
    for (const key of IMAGE_KEYS) {
      for (let at = text.indexOf(key); at >= 0; at = text.indexOf(key, at + key.length)) {
        if (at + key.length > this.#carry.length) this.#images++; // not already counted with the previous chunk
      }
    }
    this.#carry = text.slice(-(IMAGE_KEY_BYTES_MAX - 1));
  }

  images(): number {
    return this.#images;
  }

  result(): Usage | null {
    // Parsed once per body read so far (the settlement and the request path may each ask).
    if (this.#result === undefined) this.#result = lastUsageIn(UTF8.decode(this.#tail.bytes()));
    return this.#result;
  }

  reportedInput(): null {
    return null;
  }

  streamedOutputTokens(): null {
    return null;
  }

  countedOutputTokens(): number | null {
    const output = this.#output;
    return output ? output.total() + Math.ceil(output.unmeasuredBytes() / UNMEASURED_OUTPUT_BYTES_PER_TOKEN) : null;
  }

  countedOutputTokensLowerBound(): number | null {
    const output = this.#output;
    return output ? output.lowerBound() + Math.ceil(output.unmeasuredBytes() / UNMEASURED_OUTPUT_BYTES_PER_TOKEN) : null;
  }

  thinkingSeen(): boolean {
    return this.#thinking;
  }
}

function matchingBrace(text: string, open: number): number {
  let depth = 0;
  let inString = false;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return i;
  }
  return -1;
}

/**
 * A tap for a response with this content type; `countImages` for image API responses (billed per image),
 * `countOutput` to count a JSON body's text (streams are always counted).
 */
export function createUsageTap(contentType: string, opts: { countImages?: boolean; countOutput?: boolean } = {}): UsageTap {
  return contentType.toLowerCase().startsWith("text/event-stream") ? new SseTap() : new JsonTailTap(opts.countImages ?? false, opts.countOutput ?? false);
}
