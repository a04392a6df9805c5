/**
 * Token estimates for when a provider reports no usage (the client left, the stream was cut, or the caller
 * did not ask for usage). Counts use the o200k_base tokenizer (OpenAI's current models; an estimate for
 * Anthropic's). Both collectors only read bytes as they pass and keep bounded memory: text is tokenized in
 * batches of TEXT_BATCH_CHARS and only a running count is kept.
 */
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";

/**
 * One decoder for every collector: each call decodes a whole buffer (never `stream: true`), so sharing it is safe,
 * and a decoder's first decode costs ~50 µs in Node (it sets up its converter) — per request, if each had its own.
 */
const UTF8 = new TextDecoder();

/** Text held before it is tokenized and dropped, characters. */
export const TEXT_BATCH_CHARS = 64 * 1024;
/**
 * A whitespace-free run longer than this is not tokenized (tokenizing one huge "word" costs quadratic time):
 * made only of base64 characters it is binary (an image or audio) and not counted; otherwise it counts one
 * token per 4 bytes. Bytes.
 */
export const LONG_RUN_BYTES = 256;
/** Bytes per token assumed for a long run that is not base64. */
export const LONG_RUN_BYTES_PER_TOKEN = 4;

const LONG_RUN = new RegExp(`[^ \\n\\t\\r]{${LONG_RUN_BYTES + 1},}`, "g");

/**
 * Tokens of a text. Whitespace-free runs longer than LONG_RUN_BYTES characters count one token per
 * LONG_RUN_BYTES_PER_TOKEN UTF-8 bytes instead of being tokenized (BPE on one huge word is quadratic).
 */
export function tokenCount(text: string): number {
  if (text.length === 0) return 0;
  let sized = 0;
  const kept =
    text.length > LONG_RUN_BYTES
      ? text.replace(LONG_RUN, (run) => {
          sized += Math.ceil(Buffer.byteLength(run) / LONG_RUN_BYTES_PER_TOKEN);
          return "";
        })
      : text;
  return (kept.length === 0 ? 0 : countTokens(kept)) + sized;
}

/** Unicode white space beyond ASCII (what `\s` matches), which never starts a token on its own. */
const isWideSpace = (c: number) =>
  c === 0x85 ||
  c === 0xa0 ||
  c === 0x1680 ||
  (c >= 0x2000 && c <= 0x200a) ||
  c === 0x2028 ||
  c === 0x2029 ||
  c === 0x202f ||
  c === 0x205f ||
  c === 0x3000 ||
  c === 0xfeff;

/**
 * A lower bound of `tokenCount(text)`, in one pass without the tokenizer: the runs of text between spaces and tabs
 * that hold a character other than white space. o200k's pre-tokenizer puts a space or tab only at the start of a
 * piece that holds other characters, so no piece holds non-space characters of two such runs, and each run is at
 * least one piece, so at least one token (a long run counted by size is at least one token too).
 */
export function tokenLowerBound(text: string): number {
  let runs = 0;
  let counted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x09) counted = false;
    else if (!counted && c > 0x20 && !isWideSpace(c)) {
      runs++;
      counted = true;
    }
  }
  return runs;
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

  /** At most `total()`, without tokenizing the text not yet counted. */
  lowerBound(): number {
    return this.#tokens + tokenLowerBound(this.#text.join(""));
  }
}

const enum S {
  Outside,
  InString,
  Escape,
  Unicode,
}

const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x09 || b === 0x0d;
const isBase64 = (b: number) =>
  (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2b || b === 0x2f || b === 0x3d || b === 0x2d || b === 0x5f;
const DATA_URL = [0x64, 0x61, 0x74, 0x61, 0x3a]; // "data:"

/**
 * Estimates the input tokens of a JSON request body from the text of its strings (keys included, which
 * stands in for the providers' per-message overhead): each string followed by a space; data URLs not
 * counted; whitespace-free runs over LONG_RUN_BYTES counted by size, or not at all when base64. Feed it the
 * body as it streams; it holds at most one batch of text and one run.
 */
export class RequestTokenEstimator {
  #state = S.Outside;
  #hex = "";
  /**
   * Text ready for the tokenizer (whole runs and separators) in `#text[0, #queued)`, and the current run's bytes
   * after it while the run is short: one buffer, grown by doubling (at most TEXT_BATCH_CHARS + LONG_RUN_BYTES + 1
   * bytes), so a word or a separator costs no allocation of its own.
   */
  #text: Uint8Array | null = null;
  #queued = 0;
  /** The current whitespace-free run: its length, whether it is all base64 characters (its bytes follow the queued text while short). */
  #runBytes = 0;
  #runBase64 = true;
  /** Bytes of the current string seen, and whether it is a data URL (not counted). */
  #stringBytes = 0;
  #dataUrl = false;
  /** Tokens counted by size (long runs). */
  #sized = 0;
  /** Bytes not tokenized (data URLs, base64 runs) and numbers outside strings (token-id arrays). */
  #unmeasured = 0;
  #numbers = 0;
  /** The previous byte outside a string was part of a number. */
  #inNumber = false;
  readonly #count = new RunningCount();

  push(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      switch (this.#state) {
        case S.Outside:
          if (b === 0x22) {
            this.#state = S.InString;
            this.#stringBytes = 0;
            this.#dataUrl = false;
          } else {
            const digit = (b >= 0x30 && b <= 0x39) || b === 0x2d;
            if (!this.#inNumber && digit) {
              this.#numbers++;
              this.#inNumber = true;
            } else if (this.#inNumber && !digit && b !== 0x2e && b !== 0x2b && b !== 0x65 && b !== 0x45) this.#inNumber = false;
          }
          break;
        case S.InString:
          if (b === 0x22) {
            this.#endString();
            this.#state = S.Outside;
          } else if (b === 0x5c) this.#state = S.Escape;
          else this.#byte(b);
          break;
        case S.Escape:
          if (b === 0x75) {
            this.#state = S.Unicode;
            this.#hex = "";
            break;
          }
          this.#byte(b === 0x6e ? 0x0a : b === 0x74 ? 0x09 : b === 0x72 ? 0x0d : b === 0x62 || b === 0x66 ? 0x20 : b);
          this.#state = S.InString;
          break;
        case S.Unicode:
          this.#hex += String.fromCharCode(b);
          if (this.#hex.length === 4) {
            const code = Number.parseInt(this.#hex, 16);
            // Lone surrogate halves count as one character each; exact pairing does not change an estimate.
            for (const byte of UTF8_ENCODER.encode(Number.isNaN(code) || (code >= 0xd800 && code <= 0xdfff) ? "?" : String.fromCharCode(code)))
              this.#byte(byte);
            this.#state = S.InString;
          }
          break;
      }
    }
  }

  /** One decoded byte of the current string. */
  #byte(b: number): void {
    if (this.#dataUrl) {
      this.#unmeasured++;
      return;
    }
    if (this.#stringBytes < DATA_URL.length && b !== DATA_URL[this.#stringBytes])
      this.#stringBytes = DATA_URL.length + 1; // cannot be a data URL
    else if (this.#stringBytes < DATA_URL.length && ++this.#stringBytes === DATA_URL.length) {
      this.#dataUrl = true;
      this.#runBytes = 0;
      return;
    }
    if (isSpace(b)) {
      this.#endRun();
      this.#put(this.#queued, b);
      this.#queued++;
      if (this.#queued >= TEXT_BATCH_CHARS) this.#emit();
      return;
    }
    this.#runBytes++;
    if (!isBase64(b)) this.#runBase64 = false;
    if (this.#runBytes <= LONG_RUN_BYTES) this.#put(this.#queued + this.#runBytes - 1, b);
  }

  /** Writes `b` at `at` of the text buffer, growing it when it is too short. */
  #put(at: number, b: number): void {
    let text = this.#text;
    if (text === null || at >= text.length) {
      const grown = new Uint8Array(Math.max(TEXT_INITIAL_BYTES, (text?.length ?? 0) * 2, at + 1));
      if (text !== null) grown.set(text.subarray(0, at));
      this.#text = text = grown;
    }
    text[at] = b;
  }

  #endRun(): void {
    if (this.#runBytes > LONG_RUN_BYTES) {
      if (!this.#runBase64) this.#sized += Math.ceil(this.#runBytes / LONG_RUN_BYTES_PER_TOKEN);
      else this.#unmeasured += this.#runBytes;
    } else if (this.#runBytes > 0) {
      this.#queued += this.#runBytes;
      if (this.#queued >= TEXT_BATCH_CHARS) this.#emit();
    }
    this.#runBytes = 0;
    this.#runBase64 = true;
  }

  /** Hands the queued text to the counter; queued text always ends at a run boundary, never inside a character. */
  #emit(): void {
    if (this.#queued === 0) return;
    this.#count.add(UTF8.decode(this.#text!.subarray(0, this.#queued)));
    this.#queued = 0;
  }

  #endString(): void {
    if (this.#dataUrl) {
      this.#dataUrl = false;
      this.#runBytes = 0;
      this.#runBase64 = true;
    } else {
      this.#endRun();
    }
    // A separator between strings, so adjacent strings are not tokenized as one word.
    this.#put(this.#queued, 0x20);
    this.#queued++;
    if (this.#queued >= TEXT_BATCH_CHARS) this.#emit();
  }

  total(): number {
    this.#endRun();
    this.#emit();
    return this.#count.total() + this.#sized;
  }

  /** At most `total()`, without the tokenizer (`tokenLowerBound`); `total()` may still be called after it. */
  lowerBound(): number {
    this.#endRun();
    this.#emit();
    return this.#count.lowerBound() + this.#sized;
  }

  /** Bytes seen but not tokenized: data URLs and base64 runs (images, audio). */
  unmeasuredBytes(): number {
    return this.#unmeasured;
  }

  /** Numbers outside strings (a token-id array is one token per number; `true`, `null` and the like are not counted). */
  numbers(): number {
    return this.#numbers;
  }
}

/** The text buffer's first size, bytes (a small request's strings fit; it doubles as needed). */
const TEXT_INITIAL_BYTES = 1024;
const UTF8_ENCODER = new TextEncoder();

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
  #thinking = false;
  #bytes = 0;
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
        event = obj(JSON.parse(UTF8.decode(json)));
      } catch {
        continue; // `[DONE]` and anything that is not an event
      }
      if (!event) continue;
      this.#count.add(deltaText(event));
      if (!this.#thinking && event.type === "content_block_start") {
        const type = obj(event.content_block)?.type;
        this.#thinking = type === "thinking" || type === "redacted_thinking";
      }
    }
    this.#lines = [];
    this.#bytes = 0;
  }

  total(): number {
    this.#parse();
    return this.#count.total();
  }

  /** At most `total()`, without the tokenizer. */
  lowerBound(): number {
    this.#parse();
    return this.#count.lowerBound();
  }

  /** A thinking block started (Claude: the delivered thinking summarises what is billed). */
  thinkingSeen(): boolean {
    this.#parse();
    return this.#thinking;
  }
}
