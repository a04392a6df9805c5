/**
 * Reads the fields a request is routed and billed by as its body streams past — the whole body, byte by byte,
 * without holding or changing it — so the hub (and the agent) read exactly what a provider's parser reads:
 *
 * - JSON: the whole document is checked for well-formedness; the top-level `model`, `stream`, output caps
 *   (`max_tokens`, `max_completion_tokens`, `max_output_tokens`), `n`, `best_of` and the character count of a
 *   top-level `input` string are read; a top-level key that appears twice, or a billing field of the wrong type,
 *   is a problem (providers' parsers keep the *last* duplicate, so a body that repeats `model` after the part a
 *   scanner reads could be billed as one model and served as another). Deeper, it notes what makes the input
 *   larger than its bytes (references to earlier responses, stored files, remote URLs; inline images) and the
 *   server-side tools a provider bills per call.
 * - multipart/form-data: every part's headers are read; the `model`, `n` and `purpose` fields' values are collected
 *   and a repeated `model`, `n`, `purpose` or `file` field is a problem.
 * - Stored files a JSON body names (`file_id` strings of the `file-…` form at any depth: chat `file` parts,
 *   Responses `input_file` parts) are collected, so the request can go to the agent holding them.
 *
 * Runtime-neutral (Web APIs only). Memory is bounded by the named limits below, whatever the body's size.
 */

/** Longest key, or `model` value, collected, bytes. A longer `model` is a problem; a longer key is not a billing key. */
export const FIELD_BYTES_MAX = 256;
/** Deepest nesting of objects and arrays accepted. */
export const JSON_DEPTH_MAX = 256;
/** Most top-level keys one body may have (each is remembered to find repeats). */
export const TOP_LEVEL_KEYS_MAX = 1024;
/** Longest `type` value examined (tool and content-part types are short), bytes. */
const TYPE_BYTES_MAX = 64;
/** Distinct stored files (`file_id`) one body may name: the request goes to the one agent holding them all. */
export const FILE_IDS_MAX = 16;
/** A stored file's id as OpenAI spells it (`file-` and a token); other `file_id` values (container files) are not routed by. */
export const FILE_ID_PATTERN = /^file-[A-Za-z0-9_-]{1,200}$/;
/** Longest multipart part header block, bytes. */
export const MULTIPART_HEADER_BYTES_MAX = 8 * 1024;

export interface BodyFields {
  model: string | null;
  stream: boolean | null;
  /** The output cap the request sets (`max_tokens`, `max_completion_tokens` or `max_output_tokens`). */
  maxOutputTokens: number | null;
  /** `n`: how many results (choices, images) the request asks for. */
  n: number | null;
  /** `best_of` (legacy completions): candidates generated, each billed. */
  bestOf: number | null;
  /** Characters of a top-level `input` string (text to speech is billed by them). */
  inputChars: number | null;
  /**
   * The request points at content the hub cannot measure — an earlier response or conversation, a stored or
   * remote file, a remote image, an MCP server, a document — so its input is not bounded by its bytes.
   */
  references: boolean;
  /** Inline image parts (a small image may cost more tokens than its bytes). */
  imageParts: number;
  /** Server-side tools the provider bills per call (`web_search`, `file_search`, `code_interpreter`, …). */
  billedTools: string[];
  /** A top-level `previous_response_id` string (Responses API): the follow-up goes to the agent that made it. */
  previousResponseId: string | null;
  /**
   * A top-level `background` (Responses API): true asks the provider to run the response after the call returns,
   * where no meter sees its usage (the hub and the agent refuse it).
   */
  background: boolean | null;
  /** Distinct stored-file ids (`file-…`) named by `file_id` at any depth, in the order met (at most FILE_IDS_MAX). */
  fileIds: string[];
  /** A multipart `purpose` field (Files API upload). */
  purpose: string | null;
}

export interface BodyScanner {
  push(chunk: Uint8Array): void;
  /** The body ended: a document that is not complete becomes a problem. */
  end(): void;
  readonly fields: BodyFields;
  /** Why the body cannot be accepted, in words for the caller; null while it is acceptable. */
  readonly problem: string | null;
  /** `model` is known, or can no longer appear: the request can be routed. */
  readonly settled: boolean;
  /** The whole body was read and is acceptable. */
  readonly complete: boolean;
}

export function emptyFields(): BodyFields {
  return {
    model: null,
    stream: null,
    maxOutputTokens: null,
    n: null,
    bestOf: null,
    inputChars: null,
    references: false,
    imageParts: 0,
    billedTools: [],
    previousResponseId: null,
    background: null,
    fileIds: [],
    purpose: null,
  };
}

const QUOTE = 0x22,
  BACKSLASH = 0x5c,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
  LBRACKET = 0x5b,
  RBRACKET = 0x5d,
  COLON = 0x3a,
  COMMA = 0x2c;

/** Top-level fields read as whole numbers (a plain non-negative integer literal, or null). */
const COUNT_KEYS = new Set(["max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of"]);
/** Top-level fields whose string (or object) value references content outside the body. */
const REFERENCE_TOP_KEYS = new Set(["previous_response_id", "conversation", "mcp_servers", "container"]);
/** Keys, at any depth, that name stored files. */
const FILE_KEYS = new Set(["file_id", "file_ids", "vector_store_ids"]);
/** Keys, at any depth, whose string value is a URL unless it is a `data:` URL. */
const URL_KEYS = new Set(["url", "image_url", "file_url"]);
/** Content-part types: inline images, and documents whose tokens are not bounded by their bytes. */
const IMAGE_PART_TYPES = new Set(["image_url", "input_image", "image"]);
const DOCUMENT_PART_TYPES = new Set(["input_file", "file", "document", "container_upload", "mcp_tool_result", "search_result"]);
/** Tool types providers bill per call, matched by prefix (versioned names such as `web_search_20250305`). */
const BILLED_TOOL_PREFIXES = ["web_search", "web_fetch", "file_search", "code_interpreter", "code_execution", "computer_use", "image_generation", "mcp"];

const STRICT = new TextDecoder("utf-8", { fatal: true });
/** Characters that may follow a backslash in a JSON string: " \ / b f n r t u. */
const ESCAPABLE = new Set([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74, 0x75]);
const isHex = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
const INTEGER = /^(0|[1-9][0-9]{0,8})$/;
const NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
const LITERAL_CHARS_MAX = 64;

function decodeJsonString(bytes: number[]): string | null {
  // Most keys and values read here are short ASCII without escapes: no decoder needed.
  let plain = true;
  for (const b of bytes) {
    if (b >= 0x80 || b === BACKSLASH) {
      plain = false;
      break;
    }
  }
  if (plain) return String.fromCharCode(...bytes);
  try {
    const text = JSON.parse(`"${STRICT.decode(new Uint8Array(bytes))}"`) as unknown;
    return typeof text === "string" ? text : null;
  } catch {
    return null;
  }
}

/** One open object or array. */
interface Frame {
  obj: boolean;
  /** What comes next: a key (objects), the colon, a value, or a comma / the close. */
  want: 0 | 1 | 2 | 3;
  /** Members read so far (a close right after `[` / `{` is fine, after a comma it is not). */
  count: number;
  /** The current member's key (objects), decoded; null when too long to be one we read. */
  key: string | null;
}
const KEY = 0,
  COLON_NEXT = 1,
  VALUE = 2,
  COMMA_NEXT = 3;

/**
 * Incremental JSON scanner. Never throws; a body it cannot accept sets `problem` (and it stops reading).
 * Strings are stepped through byte by byte only where needed: most of a large body is string content, which
 * is skipped until its closing quote.
 */
export class JsonBodyScanner implements BodyScanner {
  readonly fields: BodyFields = emptyFields();
  problem: string | null = null;
  complete = false;
  #stack: Frame[] = [];
  #started = false;
  #closed = false;
  #bytes = 0;
  #topKeys = new Set<string>();
  // The string being read.
  #inString = false;
  #escaped = false;
  /** Hex digits still expected after `\u`. */
  #hexLeft = 0;
  #stringIsKey = false;
  #collect: number[] | null = null;
  #collectMax = 0;
  #overflow = false;
  /** The bytes collected before a string outgrew its limit. */
  #truncated: number[] | null = null;
  #chars: { count: number } | null = null;
  // The literal (number, true, false, null) being read.
  #literal = "";
  #literalLong = false;

  get settled(): boolean {
    return this.fields.model !== null || this.problem !== null || this.#closed;
  }

  #fail(message: string): void {
    if (this.problem === null) this.problem = message;
  }

  push(chunk: Uint8Array): void {
    if (this.problem !== null) return;
    const len = chunk.length;
    for (let i = 0; i < len; i++) {
      let b = chunk[i]!;
      if (this.#inString) {
        if (this.#collect === null && this.#chars === null && !this.#escaped && this.#hexLeft === 0) {
          // Fast path: nothing of this string is kept; run to its next quote, backslash or control character.
          while (b !== QUOTE && b !== BACKSLASH && b >= 0x20) {
            if (++i === len) {
              this.#bytes += len;
              return;
            }
            b = chunk[i]!;
          }
        }
        this.#stringByte(b, i);
        if (this.problem !== null) return;
        continue;
      }
      this.#structuralByte(b, i);
      if (this.problem !== null) return;
    }
    this.#bytes += len;
  }

  end(): void {
    if (this.problem !== null) return;
    if (this.#literal) this.#finishLiteral();
    if (!this.#started) this.#fail(this.#bytes === 0 ? "the request body is empty" : "the request body must be a JSON object");
    else if (!this.#closed) this.#fail("the JSON body ends before its closing brace");
    if (this.problem === null) this.complete = true;
  }

  #stringByte(b: number, at: number): void {
    const chars = this.#chars;
    if (this.#hexLeft > 0) {
      if (!isHex(b)) return this.#fail(`the request body is not valid JSON (a \\u escape needs four hex digits, at byte ${this.#bytes + at})`);
      this.#hexLeft--;
      this.#keep(b);
      return;
    }
    if (this.#escaped) {
      this.#escaped = false;
      if (!ESCAPABLE.has(b)) return this.#fail(`the request body is not valid JSON (a bad escape sequence, at byte ${this.#bytes + at})`);
      this.#keep(b);
      if (b === 0x75) this.#hexLeft = 4;
      if (chars) chars.count++; // one escape sequence is one character
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
      this.#finishString();
      return;
    }
    this.#keep(b);
    if (chars && (b & 0xc0) !== 0x80) chars.count++; // the first byte of a UTF-8 character
  }

  #keep(b: number): void {
    const c = this.#collect;
    if (c === null) return;
    if (c.length >= this.#collectMax) {
      // Longer than anything read from it: keep what was collected (a URL's scheme), stop collecting (the
      // rest of the string takes the fast path).
      this.#overflow = true;
      this.#truncated = c;
      this.#collect = null;
      return;
    }
    c.push(b);
  }

  #structuralByte(b: number, at: number): void {
    if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) {
      if (this.#literal) this.#finishLiteral();
      return;
    }
    if (this.#closed) {
      this.#fail(`the JSON body has data after its closing brace (byte ${this.#bytes + at})`);
      return;
    }
    if (!this.#started) {
      if (this.#bytes + at < 3 && (b === 0xef || b === 0xbb || b === 0xbf)) return; // UTF-8 byte order mark
      if (b !== LBRACE) {
        this.#fail("the request body must be a JSON object");
        return;
      }
      this.#started = true;
      this.#stack.push({ obj: true, want: KEY, count: 0, key: null });
      return;
    }
    const frame = this.#stack[this.#stack.length - 1]!;
    if (this.#literal) {
      if (b === COMMA || b === RBRACE || b === RBRACKET) this.#finishLiteral();
      else {
        this.#literalByte(b);
        return;
      }
      if (this.problem !== null) return;
    }
    switch (b) {
      case QUOTE:
        if (frame.obj && frame.want === KEY) this.#startString(true);
        else if (frame.want === VALUE) this.#startString(false);
        else this.#invalid(at);
        return;
      case LBRACE:
      case LBRACKET:
        if (frame.want !== VALUE) return this.#invalid(at);
        if (this.#stack.length >= JSON_DEPTH_MAX) return this.#fail(`the JSON body is nested deeper than ${JSON_DEPTH_MAX} levels`);
        this.#beforeValue(frame, b === LBRACE ? "object" : "array");
        frame.want = COMMA_NEXT;
        frame.count++;
        this.#stack.push({ obj: b === LBRACE, want: b === LBRACE ? KEY : VALUE, count: 0, key: null });
        return;
      case RBRACE:
      case RBRACKET: {
        const closesObj = b === RBRACE;
        if (frame.obj !== closesObj) return this.#invalid(at);
        const emptyOk = frame.count === 0 && (closesObj ? frame.want === KEY : frame.want === VALUE);
        if (frame.want !== COMMA_NEXT && !emptyOk) return this.#invalid(at);
        this.#stack.pop();
        if (this.#stack.length === 0) this.#closed = true;
        return;
      }
      case COLON:
        if (!frame.obj || frame.want !== COLON_NEXT) return this.#invalid(at);
        frame.want = VALUE;
        return;
      case COMMA:
        if (frame.want !== COMMA_NEXT) return this.#invalid(at);
        frame.want = frame.obj ? KEY : VALUE;
        return;
      default:
        if (frame.want !== VALUE) return this.#invalid(at);
        frame.want = COMMA_NEXT;
        frame.count++;
        this.#literalByte(b);
    }
  }

  #invalid(at: number): void {
    this.#fail(`the request body is not valid JSON (at byte ${this.#bytes + at})`);
  }

  #literalByte(b: number): void {
    if (this.#literal.length < LITERAL_CHARS_MAX) this.#literal += String.fromCharCode(b);
    else this.#literalLong = true;
  }

  /** A non-string value starts in `frame`: top-level fields that must be strings or numbers learn their type here. */
  #beforeValue(frame: Frame, kind: "object" | "array"): void {
    if (this.#stack.length !== 1) return;
    const key = frame.key;
    if (key === null) return;
    if (key === "model") this.#fail("`model` must be a string");
    else if (key === "stream" || key === "background") this.#fail(`\`${key}\` must be true or false`);
    else if (COUNT_KEYS.has(key)) this.#fail(`\`${key}\` must be a whole number`);
    else if (REFERENCE_TOP_KEYS.has(key) || (key === "prompt" && kind === "object")) this.fields.references = true;
  }

  #startString(isKey: boolean): void {
    this.#inString = true;
    this.#escaped = false;
    this.#hexLeft = 0;
    this.#stringIsKey = isKey;
    this.#overflow = false;
    this.#truncated = null;
    this.#chars = null;
    const frame = this.#stack[this.#stack.length - 1]!;
    const depth = this.#stack.length;
    if (isKey) {
      this.#collect = [];
      this.#collectMax = FIELD_BYTES_MAX;
      return;
    }
    frame.want = COMMA_NEXT;
    frame.count++;
    const key = frame.obj ? frame.key : null;
    this.#collect = null;
    if (depth === 1) {
      if (key === "model" || key === "previous_response_id") {
        this.#collect = [];
        this.#collectMax = FIELD_BYTES_MAX;
      } else if (key === "input") this.#chars = { count: 0 };
      return;
    }
    if (key === "type" || key === "file_id") {
      this.#collect = [];
      this.#collectMax = key === "type" ? TYPE_BYTES_MAX : FIELD_BYTES_MAX;
    } else if (key !== null && URL_KEYS.has(key)) {
      this.#collect = [];
      this.#collectMax = 5; // enough to tell `data:` from a remote URL
    }
  }

  #finishString(): void {
    const bytes = this.#collect;
    const overflow = this.#overflow;
    this.#collect = null;
    const frame = this.#stack[this.#stack.length - 1]!;
    const depth = this.#stack.length;
    if (this.#stringIsKey) {
      frame.want = COLON_NEXT;
      frame.key = bytes && !overflow ? decodeJsonString(bytes) : null;
      if (depth === 1) {
        const key = frame.key ?? "";
        if (key !== "") {
          if (this.#topKeys.has(key)) return this.#fail(`the JSON body repeats the field \`${key}\`; send each field once`);
          if (this.#topKeys.size >= TOP_LEVEL_KEYS_MAX) return this.#fail(`the JSON body has more than ${TOP_LEVEL_KEYS_MAX} top-level fields`);
          this.#topKeys.add(key);
        }
        if (key === "web_search_options") this.#billedTool("web_search");
      } else if (frame.key !== null && FILE_KEYS.has(frame.key)) {
        this.fields.references = true;
      }
      return;
    }
    const key = frame.obj ? frame.key : null;
    if (depth === 1) {
      if (key === "model") {
        const model = bytes && !overflow ? decodeJsonString(bytes) : null;
        if (model === null) return this.#fail(`\`model\` must be a string of at most ${FIELD_BYTES_MAX} bytes`);
        this.fields.model = model;
      } else if (key === "stream" || key === "background") this.#fail(`\`${key}\` must be true or false`);
      else if (key !== null && COUNT_KEYS.has(key)) this.#fail(`\`${key}\` must be a whole number`);
      else if (key === "input" && this.#chars) this.fields.inputChars = this.#chars.count;
      else if (key !== null && REFERENCE_TOP_KEYS.has(key)) {
        this.fields.references = true;
        if (key === "previous_response_id") this.fields.previousResponseId = bytes && !overflow ? decodeJsonString(bytes) : null;
      }
      this.#chars = null;
      return;
    }
    if (key === "file_id") {
      const id = bytes && !overflow ? decodeJsonString(bytes) : null;
      if (id === null || !FILE_ID_PATTERN.test(id) || this.fields.fileIds.includes(id)) return;
      if (this.fields.fileIds.length >= FILE_IDS_MAX) return this.#fail(`the request names more than ${FILE_IDS_MAX} stored files`);
      this.fields.fileIds.push(id);
    } else if (key === "type" && bytes && !overflow) {
      const type = decodeJsonString(bytes);
      if (type === null) return;
      const top = this.#stack[0]!.key;
      if (top === "tools" && depth === 3) {
        if (BILLED_TOOL_PREFIXES.some((p) => type.startsWith(p))) this.#billedTool(type);
      } else if (IMAGE_PART_TYPES.has(type)) this.fields.imageParts++;
      else if (DOCUMENT_PART_TYPES.has(type)) this.fields.references = true;
    } else if (key !== null && URL_KEYS.has(key)) {
      const prefix = bytes ?? this.#truncated ?? [];
      if (String.fromCharCode(...prefix) !== "data:") this.fields.references = true;
    }
  }

  #billedTool(type: string): void {
    if (!this.fields.billedTools.includes(type) && this.fields.billedTools.length < 16) this.fields.billedTools.push(type);
  }

  #finishLiteral(): void {
    const text = this.#literal;
    const long = this.#literalLong;
    this.#literal = "";
    this.#literalLong = false;
    const valid = long ? /^[-0-9.eE+]+$/.test(text) : text === "true" || text === "false" || text === "null" || NUMBER.test(text);
    if (!valid) return this.#fail(`the request body is not valid JSON (\`${text.slice(0, 16)}\` is not a value)`);
    if (this.#stack.length !== 1) return;
    const key = this.#stack[0]!.key;
    if (key === null || text === "null") return;
    if (key === "model") this.#fail("`model` must be a string");
    else if (key === "stream" || key === "background") {
      if (text !== "true" && text !== "false") this.#fail(`\`${key}\` must be true or false`);
      else if (key === "stream") this.fields.stream = text === "true";
      else this.fields.background = text === "true";
    } else if (COUNT_KEYS.has(key)) {
      if (long || !INTEGER.test(text)) return this.#fail(`\`${key}\` must be a whole number`);
      const n = Number(text);
      if (key === "n") this.fields.n = n;
      else if (key === "best_of") this.fields.bestOf = n;
      else this.fields.maxOutputTokens = n;
    }
  }
}

/** The boundary parameter of a multipart/form-data content type, or null. */
export function multipartBoundary(contentType: string): string | null {
  const m = /boundary=(?:"([^"]{1,70})"|([^;\s]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2] ?? null) : null;
}

const LATIN1 = new TextDecoder("latin1");
/** Multipart fields the hub reads; each may appear once. */
const MULTIPART_FIELDS = new Set(["model", "n", "purpose"]);
/** Multipart parts not read but refused when repeated (one upload per request: a second would be a second file). */
const MULTIPART_SINGLE_PARTS = new Set(["file"]);

/**
 * Incremental multipart/form-data scanner: finds every part's headers, collects the values of `model`, `n` and
 * `purpose` (bounded), and refuses a body that repeats one of them or its `file` part. Only a delimiter's length of bytes is kept between chunks.
 */
export class MultipartBodyScanner implements BodyScanner {
  readonly fields: BodyFields = emptyFields();
  problem: string | null = null;
  complete = false;
  readonly #delimiter: Uint8Array;
  /** Bytes not yet resolved (a possible delimiter or header block cut by a chunk boundary). */
  #carry: Uint8Array = new Uint8Array(0);
  #state: "preamble" | "after_delimiter" | "headers" | "body" | "epilogue" = "preamble";
  #field: string | null = null;
  #value: number[] | null = null;
  #seen = new Set<string>();
  #bytes = 0;

  /** Inside the `file` part (its content goes to the file sink). */
  #inFile = false;

  /** `fileSink`, when given, receives the `file` part's content bytes in order, as they are scanned. */
  constructor(
    boundary: string,
    private readonly fileSink: ((chunk: Uint8Array) => void) | null = null,
  ) {
    // A part ends at CRLF "--" boundary; the body starts with "--" boundary (a CRLF is prepended to find it).
    this.#delimiter = new TextEncoder().encode(`\r\n--${boundary}`);
    this.#carry = new Uint8Array([0x0d, 0x0a]);
  }

  get settled(): boolean {
    return this.fields.model !== null || this.problem !== null || this.#state === "epilogue";
  }

  push(chunk: Uint8Array): void {
    if (this.problem !== null || chunk.length === 0) return;
    this.#bytes += chunk.length;
    let data: Uint8Array;
    if (this.#carry.length === 0) data = chunk;
    else {
      data = new Uint8Array(this.#carry.length + chunk.length);
      data.set(this.#carry);
      data.set(chunk, this.#carry.length);
    }
    this.#carry = new Uint8Array(0);
    let at = 0;
    while (at < data.length && this.problem === null) {
      const next = this.#step(data, at);
      if (next < 0) {
        // Needs more bytes: keep the unresolved tail (bounded by the delimiter or the header limit).
        this.#carry = data.slice(~next);
        return;
      }
      at = next;
    }
  }

  end(): void {
    if (this.problem !== null) return;
    if (this.#state !== "epilogue") this.problem = this.#bytes === 0 ? "the request body is empty" : "the multipart body ends before its closing boundary";
    else this.complete = true;
  }

  /** Handles bytes from `at`; returns where to continue, or `~i` when the bytes from `i` must wait for more. */
  #step(data: Uint8Array, at: number): number {
    switch (this.#state) {
      case "epilogue":
        return data.length;
      case "preamble":
      case "body": {
        const found = indexOf(data, this.#delimiter, at);
        if (found < 0) {
          // No delimiter yet: everything but a possible delimiter prefix at the end is content.
          const keep = Math.min(this.#delimiter.length - 1, data.length - at);
          this.#content(data, at, data.length - keep);
          return keep === 0 ? data.length : ~(data.length - keep);
        }
        this.#content(data, at, found);
        if (this.#state === "body") this.#endPart();
        this.#state = "after_delimiter";
        return found + this.#delimiter.length;
      }
      case "after_delimiter": {
        if (data.length - at < 2) return ~at;
        if (data[at] === 0x2d && data[at + 1] === 0x2d) {
          this.#state = "epilogue";
          return data.length;
        }
        // Transport padding (spaces, tabs) may follow the boundary before its CRLF.
        let i = at;
        while (i < data.length && (data[i] === 0x20 || data[i] === 0x09)) i++;
        if (data.length - i < 2) return ~at;
        if (data[i] !== 0x0d || data[i + 1] !== 0x0a) {
          this.problem = "the multipart body is malformed (a boundary is not followed by a line end)";
          return data.length;
        }
        this.#state = "headers";
        return i + 2;
      }
      case "headers": {
        const end = indexOf(data, HEADER_END, at);
        if (end < 0) {
          if (data.length - at > MULTIPART_HEADER_BYTES_MAX) {
            this.problem = `a multipart part's headers exceed ${MULTIPART_HEADER_BYTES_MAX} bytes`;
            return data.length;
          }
          return ~at;
        }
        if (end - at > MULTIPART_HEADER_BYTES_MAX) {
          this.problem = `a multipart part's headers exceed ${MULTIPART_HEADER_BYTES_MAX} bytes`;
          return data.length;
        }
        this.#startPart(LATIN1.decode(data.subarray(at, end)));
        this.#state = "body";
        return end + HEADER_END.length;
      }
    }
  }

  #content(data: Uint8Array, from: number, to: number): void {
    if (this.#inFile && to > from && this.#state === "body") this.fileSink?.(data.subarray(from, to));
    const v = this.#value;
    if (v === null || to <= from) return;
    if (v.length + (to - from) > FIELD_BYTES_MAX) {
      this.problem = `the multipart field \`${this.#field}\` is longer than ${FIELD_BYTES_MAX} bytes`;
      this.#value = null;
      return;
    }
    for (let i = from; i < to; i++) v.push(data[i]!);
  }

  #startPart(headers: string): void {
    const disposition = /^content-disposition:[ \t]*form-data(.*)$/im.exec(headers)?.[1] ?? "";
    const name = /;\s*name=(?:"([^"]*)"|([^;\s]+))/i.exec(disposition);
    const field = name ? (name[1] ?? name[2] ?? "") : "";
    if (MULTIPART_SINGLE_PARTS.has(field)) {
      if (this.#seen.has(field)) this.problem = `the multipart body repeats the field \`${field}\`; send each field once`;
      this.#seen.add(field);
      this.#field = null;
      this.#value = null;
      this.#inFile = field === "file";
    } else if (MULTIPART_FIELDS.has(field)) {
      if (this.#seen.has(field)) {
        this.problem = `the multipart body repeats the field \`${field}\`; send each field once`;
        return;
      }
      this.#seen.add(field);
      this.#field = field;
      this.#value = [];
    } else {
      this.#field = null;
      this.#value = null;
    }
  }

  #endPart(): void {
    this.#inFile = false;
    const field = this.#field;
    const bytes = this.#value;
    this.#field = null;
    this.#value = null;
    if (field === null || bytes === null) return;
    let text: string;
    try {
      text = STRICT.decode(new Uint8Array(bytes));
    } catch {
      this.problem = `the multipart field \`${field}\` is not UTF-8 text`;
      return;
    }
    if (field === "model") this.fields.model = text;
    else if (field === "purpose") this.fields.purpose = text;
    else if (field === "n") {
      if (!INTEGER.test(text.trim())) this.problem = "the multipart field `n` must be a whole number";
      else this.fields.n = Number(text.trim());
    }
  }
}

const HEADER_END = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a]);

/** First index of `needle` in `hay` at or after `from`, or -1. */
function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0]!;
  const last = hay.length - needle.length;
  for (let i = hay.indexOf(first, from); i >= 0 && i <= last; i = hay.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}
