/**
 * Reads an Anthropic Message Batch create body (`POST /v1/messages/batches`, `{requests: [{custom_id, params}]}`)
 * as it streams through the hub and the agent — never parsed whole (it may be 256 MB). Each request's params are
 * handed, read, to `onParams` (the hub sums the batch's worst case from them for its hold: docs/billing.md,
 * "Message Batches"); the agent checks every request names the model it was asked to serve.
 *
 * The outer levels (the body, `requests`, each request) are tokenized here; each request's `params` object is
 * handed byte for byte to a fresh `JsonBodyScanner` (the one every `/v1/messages` body goes through), which checks
 * it and reads its model, output cap and what makes its input larger than its bytes. Refused (a problem, before
 * the body's end reaches the provider): malformed JSON; a repeated key at any of these levels (providers keep
 * the last one, so a repeated `params` could be held as one request and run as another); a field other than
 * `requests` / `custom_id` / `params`; a repeated or malformed `custom_id`; a request without `params.model` or
 * `params.max_tokens`, or with `stream`; two models in one batch; more than MESSAGE_BATCH_REQUESTS_MAX requests.
 *
 * Memory: the custom ids seen (at most MESSAGE_BATCH_REQUESTS_MAX × CUSTOM_ID_BYTES_MAX bytes) and one request's
 * scanner at a time, whatever the body's size.
 */
import { emptyFields, JsonBodyScanner, type BodyFields, type BodyScanner } from "./fields.ts";

/** Most requests in one batch (Anthropic's limit). */
export const MESSAGE_BATCH_REQUESTS_MAX = 100_000;
/** Largest batch create body, bytes (Anthropic's limit, 256 MB). */
export const MESSAGE_BATCH_BODY_BYTES_MAX = 256 * 1024 * 1024;
/** The create path (Anthropic). */
export const MESSAGE_BATCHES_PATH = "/v1/messages/batches";
/** Longest `custom_id`, bytes (Anthropic's pattern: 1–64 of letters, digits, `_` and `-`). */
export const CUSTOM_ID_BYTES_MAX = 64;
const CUSTOM_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** One request's params as read: its fields (model, output cap, images, references) and its size, bytes. */
export type BatchParamsReader = (fields: BodyFields, paramsBytes: number) => void;

const QUOTE = 0x22,
  BACKSLASH = 0x5c,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
  LBRACKET = 0x5b,
  RBRACKET = 0x5d,
  COLON = 0x3a,
  COMMA = 0x2c;

/** Where the outer tokenizer is: what it expects next at its level. */
type Want = "key" | "colon" | "value" | "comma";

interface Level {
  obj: boolean;
  want: Want;
  count: number;
  keys: Set<string>;
  key: string | null;
}

export class MessageBatchBodyScanner {
  problem: string | null = null;
  complete = false;
  /** The batch's model (every request's `params.model`), once the first request's params are read. */
  model: string | null = null;
  /** Requests read whole so far. */
  requests = 0;

  #bytes = 0;
  #started = false;
  #closed = false;
  readonly #levels: Level[] = [];
  readonly #customIds = new Set<string>();
  // The outer string being read (a key or a value at the outer levels).
  #inString = false;
  #escaped = false;
  #collect: number[] | null = null;
  // The current request.
  #customId: string | null = null;
  #paramsSeen = false;
  // The current `params` object, handed to its own scanner: its nesting inside, and its string state.
  #params: JsonBodyScanner | null = null;
  #paramsBytes = 0;
  #paramsDepth = 0;
  #paramsInString = false;
  #paramsEscaped = false;

  constructor(
    /** Told of each request's params once they are read and accepted. */
    private readonly onParams: BatchParamsReader = () => {},
  ) {}

  #fail(message: string): void {
    if (this.problem === null) this.problem = message;
  }

  push(chunk: Uint8Array): void {
    if (this.problem !== null) return;
    for (let i = 0; i < chunk.length && this.problem === null; i++) {
      if (this.#params) {
        // Inside a request's params: find its end (strings and nesting), and hand every byte to its scanner.
        const end = this.#paramsSpan(chunk, i);
        this.#params.push(chunk.subarray(i, end));
        this.#paramsBytes += end - i;
        if (this.#params.problem) return this.#fail(`requests[${this.requests}].params: ${this.#params.problem}`);
        i = end - 1;
        if (this.#paramsDepth === 0) this.#endParams();
        continue;
      }
      this.#byte(chunk[i]!, i);
    }
    this.#bytes += chunk.length;
  }

  /** The index just past the params object's last byte in `chunk` from `from`, or the chunk's end. */
  #paramsSpan(chunk: Uint8Array, from: number): number {
    for (let i = from; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.#paramsInString) {
        if (this.#paramsEscaped) this.#paramsEscaped = false;
        else if (b === BACKSLASH) this.#paramsEscaped = true;
        else if (b === QUOTE) this.#paramsInString = false;
        continue;
      }
      if (b === QUOTE) this.#paramsInString = true;
      else if (b === LBRACE || b === LBRACKET) this.#paramsDepth++;
      else if (b === RBRACE || b === RBRACKET) {
        this.#paramsDepth--;
        if (this.#paramsDepth === 0) return i + 1;
      }
    }
    return chunk.length;
  }

  end(): void {
    if (this.problem !== null) return;
    if (!this.#started) return this.#fail(this.#bytes === 0 ? "the request body is empty" : "the request body must be a JSON object");
    if (!this.#closed) return this.#fail("the JSON body ends before its closing brace");
    if (this.requests === 0) return this.#fail("`requests` must list at least one request");
    this.complete = true;
  }

  #invalid(at: number): void {
    this.#fail(`the request body is not valid JSON (at byte ${this.#bytes + at})`);
  }

  #byte(b: number, at: number): void {
    if (this.#inString) return this.#stringByte(b, at);
    if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) return;
    if (this.#closed) return this.#fail(`the JSON body has data after its closing brace (byte ${this.#bytes + at})`);
    if (!this.#started) {
      if (this.#bytes + at < 3 && (b === 0xef || b === 0xbb || b === 0xbf)) return;
      if (b !== LBRACE) return this.#fail("the request body must be a JSON object");
      this.#started = true;
      this.#levels.push({ obj: true, want: "key", count: 0, keys: new Set(), key: null });
      return;
    }
    const level = this.#levels[this.#levels.length - 1]!;
    switch (b) {
      case QUOTE:
        if (level.obj && level.want === "key") this.#startString();
        else if (level.want === "value") {
          this.#valueStarts(level, "string");
          if (this.problem !== null) return;
          level.want = "comma";
          level.count++;
          this.#startString();
        } else this.#invalid(at);
        return;
      case LBRACE:
      case LBRACKET: {
        if (level.want !== "value") return this.#invalid(at);
        this.#valueStarts(level, b === LBRACE ? "object" : "array");
        if (this.problem !== null) return;
        level.want = "comma";
        level.count++;
        if (this.#levels.length === 3 && level.key === "params") {
          // A request's params: its own scanner reads it (and checks it) from this brace to its closing one.
          this.#params = new JsonBodyScanner();
          this.#params.push(Uint8Array.of(LBRACE));
          this.#paramsBytes = 1;
          this.#paramsDepth = 1;
          this.#paramsInString = false;
          this.#paramsEscaped = false;
          return;
        }
        this.#levels.push({ obj: b === LBRACE, want: b === LBRACE ? "key" : "value", count: 0, keys: new Set(), key: null });
        if (this.#levels.length === 3) this.#startRequest();
        return;
      }
      case RBRACE:
      case RBRACKET: {
        const closesObj = b === RBRACE;
        if (level.obj !== closesObj) return this.#invalid(at);
        const emptyOk = level.count === 0 && (closesObj ? level.want === "key" : level.want === "value");
        if (level.want !== "comma" && !emptyOk) return this.#invalid(at);
        if (this.#levels.length === 3) this.#endRequest();
        this.#levels.pop();
        if (this.#levels.length === 0) this.#closed = true;
        return;
      }
      case COLON:
        if (!level.obj || level.want !== "colon") return this.#invalid(at);
        level.want = "value";
        return;
      case COMMA:
        if (level.want !== "comma") return this.#invalid(at);
        level.want = level.obj ? "key" : "value";
        return;
      default:
        // No outer value is a number or a literal (each is an array, an object or a custom id).
        if (level.want === "value") this.#valueStarts(level, "literal");
        this.#invalid(at);
    }
  }

  /** A value starts at an outer level: it must be of the kind its place takes. */
  #valueStarts(level: Level, kind: "object" | "array" | "string" | "literal"): void {
    const depth = this.#levels.length;
    if (depth === 1 && kind !== "array") return this.#fail("`requests` must be an array of requests");
    if (depth === 2 && kind !== "object") return this.#fail(`requests[${this.requests}] must be an object with \`custom_id\` and \`params\``);
    if (depth === 3) {
      if (level.key === "custom_id" && kind !== "string") return this.#fail(`requests[${this.requests}].custom_id must be a string`);
      if (level.key === "params" && kind !== "object") return this.#fail(`requests[${this.requests}].params must be an object`);
    }
  }

  #startString(): void {
    this.#inString = true;
    this.#escaped = false;
    this.#collect = [];
  }

  #stringByte(b: number, at: number): void {
    if (this.#escaped) {
      this.#escaped = false;
      this.#keep(b);
      return;
    }
    if (b < 0x20) return this.#fail(`the request body is not valid JSON (a control character inside a string, at byte ${this.#bytes + at})`);
    if (b === BACKSLASH) {
      this.#escaped = true;
      this.#keep(b);
      return;
    }
    if (b === QUOTE) {
      this.#inString = false;
      return this.#finishString();
    }
    this.#keep(b);
  }

  #keep(b: number): void {
    // Outer keys and custom ids are short: a longer string is kept only in part (it is refused either way).
    if (this.#collect && this.#collect.length <= CUSTOM_ID_BYTES_MAX + 16) this.#collect.push(b);
  }

  #finishString(): void {
    const bytes = this.#collect ?? [];
    this.#collect = null;
    const level = this.#levels[this.#levels.length - 1]!;
    const depth = this.#levels.length;
    const text = bytes.length > CUSTOM_ID_BYTES_MAX + 16 ? null : decode(bytes);
    if (level.obj && level.want === "key") {
      level.want = "colon";
      level.key = text;
      const allowed = depth === 1 ? ["requests"] : ["custom_id", "params"];
      {
        const key = text ?? "";
        if (level.keys.has(key))
          return this.#fail(`the JSON body repeats the field \`${key}\`${depth === 3 ? ` in requests[${this.requests}]` : ""}; send each field once`);
        level.keys.add(key);
        if (!allowed.includes(key)) {
          return this.#fail(`${depth === 3 ? `requests[${this.requests}].` : ""}${key.slice(0, 64)}: Extra inputs are not permitted`);
        }
      }
      return;
    }
    if (depth === 3 && level.key === "custom_id") {
      if (text === null || !CUSTOM_ID.test(text)) {
        return this.#fail(`requests[${this.requests}].custom_id must be 1 to ${CUSTOM_ID_BYTES_MAX} letters, digits, underscores or hyphens`);
      }
      if (this.#customIds.has(text))
        return this.#fail(`requests[${this.requests}].custom_id '${text}' is used by an earlier request; each custom_id must be unique`);
      this.#customIds.add(text);
      this.#customId = text;
    }
  }

  #startRequest(): void {
    if (this.requests >= MESSAGE_BATCH_REQUESTS_MAX) return this.#fail(`a batch may hold at most ${MESSAGE_BATCH_REQUESTS_MAX} requests`);
    this.#customId = null;
    this.#paramsSeen = false;
  }

  #endParams(): void {
    const scanner = this.#params!;
    this.#params = null;
    scanner.end();
    const at = `requests[${this.requests}].params`;
    if (scanner.problem) return this.#fail(`${at}: ${scanner.problem}`);
    const f = scanner.fields;
    if (f.model === null) return this.#fail(`${at}.model: Field required`);
    if (f.maxOutputTokens === null) return this.#fail(`${at}.max_tokens: Field required`);
    if (f.stream === true) return this.#fail(`${at}.stream: streaming is not supported in a batch`);
    if (f.billedTools.length > 0) {
      return this.#fail(`${at}.tools: the server-side tool \`${f.billedTools[0]}\` is billed per call by the provider and is not offered through this gateway`);
    }
    if (this.model === null) this.model = f.model;
    else if (f.model !== this.model) {
      return this.#fail(`${at}.model is '${f.model.slice(0, 64)}' but an earlier request uses '${this.model}'; this gateway takes one model per batch`);
    }
    this.onParams(f, this.#paramsBytes);
    this.#paramsSeen = true;
  }

  #endRequest(): void {
    if (this.#customId === null) return this.#fail(`requests[${this.requests}].custom_id: Field required`);
    if (!this.#paramsSeen) return this.#fail(`requests[${this.requests}].params: Field required`);
    this.requests++;
  }
}

function decode(bytes: number[]): string | null {
  try {
    const text = JSON.parse(`"${new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes))}"`) as unknown;
    return typeof text === "string" ? text : null;
  } catch {
    return null;
  }
}

/**
 * The batch scanner as a body scanner: `fields.model` is the batch's model once its first request's params are
 * read (the request is routed, and checked at the agent, by it); the other fields stay empty.
 */
export class MessageBatchScanner implements BodyScanner {
  readonly batch: MessageBatchBodyScanner;
  readonly fields: BodyFields = emptyFields();

  constructor(onParams?: BatchParamsReader) {
    this.batch = new MessageBatchBodyScanner(onParams);
  }

  push(chunk: Uint8Array): void {
    this.batch.push(chunk);
    this.fields.model = this.batch.model;
  }

  end(): void {
    this.batch.end();
  }

  get problem(): string | null {
    return this.batch.problem;
  }

  get settled(): boolean {
    return this.batch.model !== null || this.batch.problem !== null || this.batch.complete;
  }

  get complete(): boolean {
    return this.batch.complete;
  }
}
