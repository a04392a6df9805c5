/**
 * Token estimates for when a provider reports no usage (the client left, the stream was cut, or the caller
 * did not ask for usage). Counts use the o200k_base tokenizer (OpenAI's current models; an estimate for
 * Anthropic's). Both collectors only read bytes as they pass and keep bounded memory: text is tokenized in
 * batches of TEXT_BATCH_CHARS and only a running count is kept.
 */
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";

/** Text held before it is tokenized and dropped, characters. */
export const TEXT_BATCH_CHARS = 64 * 1024;
/** A JSON string at least this long with no whitespace is treated as binary (base64 image/audio) and not counted, bytes. */
export const BINARY_STRING_BYTES_MIN = 1024;

export function tokenCount(text: string): number {
  return text.length === 0 ? 0 : countTokens(text);
}

/** Counts the tokens of text added to it, tokenizing in batches. */
class RunningCount {
  #text: string[] = [];
  #chars = 0;
  #tokens = 0;

  add(text: string): void {
    if (!text) return;
    this.#text.push(text);
    this.#chars += text.length;
    if (this.#chars >= TEXT_BATCH_CHARS) this.#flush();
  }

  #flush(): void {
    this.#tokens += tokenCount(this.#text.join(""));
    this.#text = [];
    this.#chars = 0;
  }

  total(): number {
    this.#flush();
    return this.#tokens;
  }
}

const enum S {
  Outside,
  InString,
  Escape,
  Unicode,
}

/**
 * Estimates the input tokens of a JSON request body from the text of its strings (keys included, which
 * stands in for the providers' per-message overhead), skipping binary payloads. Feed it the body as it
 * streams; it never holds more than one batch of text.
 */
export class RequestTokenEstimator {
  #state = S.Outside;
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  #stringBytes = 0;
  #binary = false;
  #sawSpace = false;
  #hex = "";
  readonly #decoder = new TextDecoder();
  readonly #encoder = new TextEncoder();
  readonly #count = new RunningCount();

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      switch (this.#state) {
        case S.Outside: {
          const quote = chunk.indexOf(0x22, i);
          if (quote < 0) return;
          this.#state = S.InString;
          this.#stringBytes = 0;
          this.#binary = false;
          this.#sawSpace = false;
          i = quote + 1;
          break;
        }
        case S.InString: {
          let j = i;
          let space = false;
          for (; j < chunk.length; j++) {
            const b = chunk[j]!;
            if (b === 0x22 || b === 0x5c) break;
            if (b === 0x20) space = true;
          }
          this.#text(chunk.subarray(i, j), space);
          if (j === chunk.length) return;
          if (chunk[j] === 0x22) {
            this.#endString();
            this.#state = S.Outside;
          } else {
            this.#state = S.Escape;
          }
          i = j + 1;
          break;
        }
        case S.Escape: {
          const b = chunk[i++]!;
          if (b === 0x75) {
            this.#state = S.Unicode;
            this.#hex = "";
            break;
          }
          const ch = b === 0x6e ? "\n" : b === 0x74 ? "\t" : b === 0x72 ? "\r" : b === 0x62 || b === 0x66 ? " " : String.fromCharCode(b);
          this.#text(this.#encoder.encode(ch), ch.trim() === "");
          this.#state = S.InString;
          break;
        }
        case S.Unicode: {
          this.#hex += String.fromCharCode(chunk[i++]!);
          if (this.#hex.length === 4) {
            const code = Number.parseInt(this.#hex, 16);
            // Lone surrogate halves count as one character each; exact pairing does not change an estimate.
            const ch = Number.isNaN(code) || (code >= 0xd800 && code <= 0xdfff) ? "?" : String.fromCharCode(code);
            this.#text(this.#encoder.encode(ch), ch.trim() === "");
            this.#state = S.InString;
          }
          break;
        }
      }
    }
  }

  #text(bytes: Uint8Array, space: boolean): void {
    if (this.#binary || bytes.length === 0) return;
    if (space) this.#sawSpace = true;
    this.#stringBytes += bytes.length;
    if (this.#stringBytes >= BINARY_STRING_BYTES_MIN && !this.#sawSpace) {
      // A long run with no space: base64 (images, audio), not text.
      this.#binary = true;
      this.#dropCurrentString();
      return;
    }
    this.#parts.push(bytes.slice());
    this.#partBytes += bytes.length;
    if (this.#partBytes >= TEXT_BATCH_CHARS) this.#emit(true);
  }

  #stringStartPart = 0;

  #dropCurrentString(): void {
    // Whatever of this string is still queued is taken back; a part already tokenized with a full batch
    // (at most BINARY_STRING_BYTES_MIN bytes) stays counted.
    this.#parts.length = Math.min(this.#parts.length, this.#stringStartPart);
    this.#partBytes = this.#parts.reduce((n, p) => n + p.length, 0);
  }

  #emit(more: boolean): void {
    if (this.#parts.length === 0) return;
    const all = new Uint8Array(this.#partBytes);
    let at = 0;
    for (const p of this.#parts) {
      all.set(p, at);
      at += p.length;
    }
    this.#count.add(this.#decoder.decode(all, { stream: more }));
    this.#parts = [];
    this.#partBytes = 0;
    this.#stringStartPart = 0;
  }

  #endString(): void {
    // A separator between strings, so adjacent strings are not tokenized as one word.
    this.#parts.push(SPACE);
    this.#partBytes += 1;
    this.#stringStartPart = this.#parts.length;
  }

  total(): number {
    this.#emit(false);
    return this.#count.total();
  }
}

const SPACE = new Uint8Array([0x20]);

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | null => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : null);
const str = (v: unknown): string => (typeof v === "string" ? v : "");

/**
 * The generated text a streamed event carries: OpenAI chat/completions deltas (content, refusal, reasoning,
 * tool-call arguments), Responses API `*.delta` events, Anthropic `content_block_delta` (text, thinking,
 * tool input JSON). Other events carry none.
 */
export function deltaText(event: Json): string {
  if (Array.isArray(event.choices)) {
    let out = "";
    for (const c of event.choices) {
      const choice = obj(c);
      if (!choice) continue;
      out += str(choice.text);
      const delta = obj(choice.delta);
      if (!delta) continue;
      out += str(delta.content) + str(delta.refusal) + str(delta.reasoning_content) + str(delta.reasoning);
      out += str(obj(delta.function_call)?.arguments);
      if (Array.isArray(delta.tool_calls)) {
        for (const t of delta.tool_calls) out += str(obj(obj(t)?.function)?.arguments);
      }
    }
    return out;
  }
  const type = str(event.type);
  if (type === "content_block_delta") {
    const d = obj(event.delta);
    return d ? str(d.text) + str(d.thinking) + str(d.partial_json) : "";
  }
  if (type.startsWith("response.") && type.endsWith(".delta")) return str(event.delta);
  return "";
}

/** Counts the tokens of the text in the SSE events handed to it (the JSON of whole `data:` lines). */
export class StreamedTokenCounter {
  #lines: Uint8Array[] = [];
  #bytes = 0;
  readonly #decoder = new TextDecoder();
  readonly #count = new RunningCount();

  /** One complete `data:` line's JSON, as bytes the counter may keep. Parsed lazily, in batches. */
  line(json: Uint8Array): void {
    this.#lines.push(json);
    this.#bytes += json.length;
    if (this.#bytes >= TEXT_BATCH_CHARS) this.#parse();
  }

  #parse(): void {
    for (const json of this.#lines) {
      let event: Json | null = null;
      try {
        event = obj(JSON.parse(this.#decoder.decode(json)));
      } catch {
        continue; // `[DONE]` and anything that is not an event
      }
      if (event) this.#count.add(deltaText(event));
    }
    this.#lines = [];
    this.#bytes = 0;
  }

  total(): number {
    this.#parse();
    return this.#count.total();
  }
}
