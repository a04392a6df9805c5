/**
 * Reads the few routing fields of a request body as its bytes stream past, without buffering or
 * re-serialising it: the top-level `model` (string) and `stream` (boolean) of a JSON object, or the
 * `model` field of a multipart/form-data body. Bytes are never modified; the proxy forwards them as they came.
 */

const QUOTE = 0x22, BACKSLASH = 0x5c, LBRACE = 0x7b, RBRACE = 0x7d, LBRACKET = 0x5b, RBRACKET = 0x5d;
const COLON = 0x3a, COMMA = 0x2c;
/** Longest top-level key or model value collected; longer ones are skipped, not buffered. */
const FIELD_BYTES_MAX = 256;

export interface RoutingFields {
  model: string | null;
  stream: boolean | null;
  /** The output cap the request sets (`max_tokens`, `max_completion_tokens` or `max_output_tokens`). */
  maxOutputTokens: number | null;
  /** `n`: how many results (images) the request asks for. */
  n: number | null;
  /** Characters of a top-level `input` string (text to speech is billed by them). */
  inputChars: number | null;
}

const MAX_OUTPUT_KEYS = new Set(["max_tokens", "max_completion_tokens", "max_output_tokens"]);

export interface FieldScanner {
  push(chunk: Uint8Array): void;
  /** True once `model` is known (or can no longer appear). */
  readonly settled: boolean;
  readonly fields: RoutingFields;
  /** Set when the body is visibly not what the route expects (e.g. not a JSON object). */
  readonly malformed: string | null;
}

type Want = "key" | "colon" | "value" | "comma";

/** Incremental scanner for the top level of a JSON object. */
export class JsonFieldScanner implements FieldScanner {
  fields: RoutingFields = { model: null, stream: null, maxOutputTokens: null, n: null, inputChars: null };
  /** Counting the characters of the `input` string being read: count, and hex digits of a \u escape left. */
  #chars: { count: number; hexLeft: number } | null = null;
  malformed: string | null = null;
  /** Set once the top-level object closed: every top-level field has been seen. */
  complete = false;
  #depth = 0;
  #started = false;
  #inString = false;
  #escaped = false;
  #want: Want = "key";
  #collect: number[] | null = null;
  #collectingKey = false;
  #key = "";
  #literal = "";
  #done = false;

  get settled(): boolean {
    return this.fields.model !== null || this.malformed !== null || this.#done;
  }

  push(chunk: Uint8Array): void {
    if (this.malformed || this.#done) return;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.#inString) {
        const chars = this.#chars;
        if (this.#escaped) {
          this.#escaped = false;
          this.#collectByte(b);
          if (chars) {
            chars.count++; // one escape sequence is one character
            if (b === 0x75) chars.hexLeft = 4;
          }
        } else if (b === BACKSLASH) {
          this.#escaped = true;
          this.#collectByte(b);
        } else if (b === QUOTE) {
          this.#inString = false;
          this.#finishString();
        } else {
          this.#collectByte(b);
          if (chars) {
            if (chars.hexLeft > 0) chars.hexLeft--;
            else if ((b & 0xc0) !== 0x80) chars.count++; // the first byte of a UTF-8 character
          }
        }
        continue;
      }
      if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) {
        if (this.#literal) this.#finishLiteral();
        continue;
      }
      if (!this.#started) {
        if (b === 0xef || b === 0xbb || b === 0xbf) continue; // UTF-8 BOM
        if (b !== LBRACE) {
          this.malformed = "request body must be a JSON object";
          return;
        }
        this.#started = true;
        this.#depth = 1;
        this.#want = "key";
        continue;
      }
      if (this.#depth === 1) {
        this.#topLevelByte(b);
        if (this.malformed || this.#done) return;
      } else {
        if (b === QUOTE) {
          this.#inString = true;
          this.#collect = null;
        } else if (b === LBRACE || b === LBRACKET) this.#depth++;
        else if (b === RBRACE || b === RBRACKET) {
          this.#depth--;
          if (this.#depth === 1) this.#want = "comma";
        }
      }
    }
  }

  #topLevelByte(b: number): void {
    switch (this.#want) {
      case "key":
        if (b === QUOTE) {
          this.#inString = true;
          this.#collectingKey = true;
          this.#collect = [];
        } else if (b === RBRACE) this.#close();
        else this.malformed = "request body is not valid JSON";
        return;
      case "colon":
        if (b === COLON) this.#want = "value";
        else this.malformed = "request body is not valid JSON";
        return;
      case "value":
        if (b === QUOTE) {
          this.#inString = true;
          this.#collectingKey = false;
          this.#collect = this.#key === "model" ? [] : null;
          this.#chars = this.#key === "input" ? { count: 0, hexLeft: 0 } : null;
          this.#want = "comma";
        } else if (b === LBRACE || b === LBRACKET) {
          this.#depth++;
          this.#want = "comma";
        } else {
          this.#literal += String.fromCharCode(b);
          if (this.#literal.length > 32) this.#literal = this.#literal.slice(0, 32);
          this.#want = "comma";
        }
        return;
      case "comma":
        if (this.#literal && (b === COMMA || b === RBRACE)) this.#finishLiteral();
        if (b === COMMA) this.#want = "key";
        else if (b === RBRACE) this.#close();
        else if (this.#literal) this.#literal += String.fromCharCode(b);
        else this.malformed = "request body is not valid JSON";
        return;
    }
  }

  #close(): void {
    this.#done = true;
    this.complete = true;
  }

  #collectByte(b: number): void {
    if (this.#collect === null) return;
    if (this.#collect.length >= FIELD_BYTES_MAX) {
      this.#collect = null;
      return;
    }
    this.#collect.push(b);
  }

  #finishString(): void {
    const bytes = this.#collect;
    this.#collect = null;
    if (this.#collectingKey) {
      this.#collectingKey = false;
      this.#key = bytes ? decodeJsonString(bytes) ?? "" : "";
      this.#want = "colon";
      return;
    }
    if (this.#key === "model" && bytes) this.fields.model = decodeJsonString(bytes);
    if (this.#chars) {
      this.fields.inputChars = this.#chars.count;
      this.#chars = null;
    }
  }

  #finishLiteral(): void {
    if (this.#key === "stream") this.fields.stream = this.#literal === "true" ? true : this.#literal === "false" ? false : null;
    if (MAX_OUTPUT_KEYS.has(this.#key) && /^\d{1,9}$/.test(this.#literal)) this.fields.maxOutputTokens = Number(this.#literal);
    if (this.#key === "n" && /^\d{1,4}$/.test(this.#literal)) this.fields.n = Number(this.#literal);
    this.#literal = "";
  }
}

function decodeJsonString(bytes: number[]): string | null {
  try {
    const text = JSON.parse(`"${new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes))}"`) as unknown;
    return typeof text === "string" ? text : null;
  } catch {
    return null;
  }
}

/**
 * Finds the `model` field of a multipart/form-data body. Only a small tail of the bytes already seen is
 * kept (to match a field split across chunks); the body itself is never held here.
 */
export class MultipartFieldScanner implements FieldScanner {
  fields: RoutingFields = { model: null, stream: null, maxOutputTokens: null, n: null, inputChars: null };
  malformed: string | null = null;
  #tail = "";
  readonly #pattern: RegExp;
  static readonly TAIL_CHARS = 1024;

  constructor(boundary: string) {
    const b = boundary.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    this.#pattern = new RegExp(`content-disposition:\\s*form-data;\\s*name="?model"?\\r\\n(?:[^\\r\\n]+\\r\\n)*\\r\\n([^\\r\\n]{1,256})\\r\\n--${b}`, "i");
  }

  get settled(): boolean {
    return this.fields.model !== null;
  }

  push(chunk: Uint8Array): void {
    if (this.settled) return;
    const text = this.#tail + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("latin1");
    const m = this.#pattern.exec(text);
    if (m) {
      this.fields.model = Buffer.from(m[1]!, "latin1").toString("utf8");
      return;
    }
    this.#tail = text.slice(-MultipartFieldScanner.TAIL_CHARS);
  }
}

export function multipartBoundary(contentType: string): string | null {
  const m = /boundary=(?:"([^"]{1,70})"|([^;\s]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2] ?? null) : null;
}
