/**
 * A batch input file's worst case (OpenAI Batch API; docs/billing.md "Batches"), read while its upload streams
 * through the hub (`POST /v1/files`, purpose `batch`), with bounded memory: one line at a time, at most
 * `BATCH_LINE_BYTES_MAX` of it. Each line is one request (`{custom_id, method, url, body}`); its worst usage is
 * what the same body would hold online (`worstUsage`: input ≤ the body's bytes, bounded by the model's window;
 * output ≤ its `max_tokens` / `max_completion_tokens` / `max_output_tokens`, else the model's output maximum,
 * × `n`). The file's summary is the sum over its lines: the hold a batch created from it takes, at batch prices.
 *
 * A file the hub cannot bound is recorded as not batchable, with the reason (the batch create is then refused;
 * the upload itself is not — the provider accepts the file): a line that is not a JSON object, repeats a key,
 * is not a POST, names an endpoint the hub does not bill batches for, names another endpoint or model than the
 * line before (the provider takes one model per file), has no model; more than `BATCH_REQUESTS_MAX` lines or
 * `BATCH_FILE_BYTES_MAX` bytes; a line over `BATCH_LINE_BYTES_MAX`. Blank lines, CRLF line ends and a missing
 * final newline are read as the provider reads them.
 */
import { JsonBodyScanner } from "@wellspring/protocol";
import { worstUsage, type BillingUnit, type ModelLimits } from "./worst_case.ts";
import type { BatchInputSummary } from "../routing/files.ts";

/** Requests one batch input file may hold (OpenAI's limit). */
export const BATCH_REQUESTS_MAX = 50_000;
/** Largest batch input file, bytes (OpenAI's limit: 200 MB). */
export const BATCH_FILE_BYTES_MAX = 200_000_000;
/** Longest line the hub reads, bytes: a longer one makes the file not batchable (and bounds the scan's memory). */
export const BATCH_LINE_BYTES_MAX = 8 * 1024 * 1024;
/** Deepest object nesting searched for a repeated key (the line and its body). */
const DUPLICATE_KEY_DEPTH_MAX = 2;

/** The endpoints a batch may name whose usage the hub bills, and by what. */
export const BATCH_ENDPOINTS: ReadonlyMap<string, BillingUnit> = new Map([
  ["/v1/chat/completions", "tokens"],
  ["/v1/responses", "tokens"],
  ["/v1/completions", "tokens"],
  ["/v1/embeddings", "input_tokens"],
]);

export type { BatchInputSummary };

/**
 * Scans a batch input file's bytes in order (`push`), then `end` gives its summary. `limitsOf` gives a model's
 * window and output maximum (`modelLimits` with the gateway's default output cap).
 */
export class BatchInputScanner {
  #problem: string | null = null;
  #parts: Uint8Array[] = [];
  #lineBytes = 0;
  #bytes = 0;
  #lineNo = 0;
  #lines = 0;
  #model: string | null = null;
  #endpoint: string | null = null;
  #worstInput = 0;
  #worstOutput = 0;
  #limits: ModelLimits | null = null;

  constructor(private readonly limitsOf: (model: string) => ModelLimits) {}

  push(chunk: Uint8Array): void {
    if (this.#problem !== null || chunk.length === 0) return;
    this.#bytes += chunk.length;
    if (this.#bytes > BATCH_FILE_BYTES_MAX) return this.#fail(`the file is larger than ${BATCH_FILE_BYTES_MAX} bytes`);
    let at = 0;
    while (at < chunk.length && this.#problem === null) {
      const nl = chunk.indexOf(0x0a, at);
      const end = nl < 0 ? chunk.length : nl;
      if (this.#lineBytes + (end - at) > BATCH_LINE_BYTES_MAX) return this.#fail(`line ${this.#lineNo + 1} is longer than ${BATCH_LINE_BYTES_MAX} bytes`);
      if (end > at) {
        this.#parts.push(chunk.slice(at, end));
        this.#lineBytes += end - at;
      }
      if (nl < 0) return;
      this.#line();
      at = nl + 1;
    }
  }

  end(): BatchInputSummary {
    if (this.#problem === null && this.#lineBytes > 0) this.#line();
    if (this.#problem === null && this.#lines === 0) this.#fail("the file has no requests");
    if (this.#problem !== null) return { batchable: false, problem: this.#problem };
    return {
      batchable: true,
      model: this.#model!,
      endpoint: this.#endpoint!,
      lines: this.#lines,
      worstInputTokens: this.#worstInput,
      worstOutputTokens: this.#worstOutput,
    };
  }

  #fail(problem: string): void {
    this.#problem = problem;
    this.#parts = [];
  }

  #line(): void {
    this.#lineNo++;
    const bytes = Buffer.concat(this.#parts);
    this.#parts = [];
    this.#lineBytes = 0;
    let text = bytes.toString("utf8");
    if (text.endsWith("\r")) text = text.slice(0, -1);
    if (text.trim() === "") return;
    const n = this.#lineNo;
    if (++this.#lines > BATCH_REQUESTS_MAX) return this.#fail(`the file has more than ${BATCH_REQUESTS_MAX} requests`);
    let line: unknown;
    try {
      line = JSON.parse(text);
    } catch {
      return this.#fail(`line ${n} is not JSON`);
    }
    if (typeof line !== "object" || line === null || Array.isArray(line)) return this.#fail(`line ${n} is not a JSON object`);
    const repeated = repeatedKey(text);
    if (repeated !== null) return this.#fail(`line ${n} repeats the key \`${repeated}\``);
    const { method, url, body } = line as Record<string, unknown>;
    if (method !== "POST") return this.#fail(`line ${n}: \`method\` must be "POST"`);
    if (typeof url !== "string" || !BATCH_ENDPOINTS.has(url)) {
      return this.#fail(`line ${n}: \`url\` must be one of ${[...BATCH_ENDPOINTS.keys()].join(", ")} (the endpoints whose batches the hub bills)`);
    }
    if (this.#endpoint !== null && url !== this.#endpoint)
      return this.#fail(`line ${n} names the endpoint ${url}, another than the lines before (${this.#endpoint})`);
    if (typeof body !== "object" || body === null || Array.isArray(body)) return this.#fail(`line ${n}: \`body\` must be a JSON object`);
    const bodyBytes = Buffer.from(JSON.stringify(body));
    const scanner = new JsonBodyScanner();
    scanner.push(bodyBytes);
    scanner.end();
    if (scanner.problem !== null) return this.#fail(`line ${n}: ${scanner.problem}`);
    const model = scanner.fields.model;
    if (model === null) return this.#fail(`line ${n}: the body names no model`);
    if (this.#model !== null && model !== this.#model)
      return this.#fail(`line ${n} names the model ${model}, another than the lines before (${this.#model}); a batch runs one model`);
    if (scanner.fields.stream === true || scanner.fields.background === true)
      return this.#fail(`line ${n}: a batch request cannot stream or run in the background`);
    this.#model = model;
    this.#endpoint = url;
    this.#limits ??= this.limitsOf(model);
    const worst = worstUsage(BATCH_ENDPOINTS.get(url)!, false, scanner.fields, bodyBytes.length, this.#limits);
    this.#worstInput += worst.inputTokens;
    this.#worstOutput += worst.outputTokens;
  }
}

/**
 * The first key repeated within one object of `text` (a JSON document), searched to `DUPLICATE_KEY_DEPTH_MAX`
 * levels of objects; null when none is. Keys are compared decoded (`"mod\u0065l"` repeats `"model"`): a provider's
 * parser keeps the last of them, so a line that repeats one could be bounded by one value and run with another.
 */
export function repeatedKey(text: string): string | null {
  // Per open container: whether it is an object, its keys (null: an array, or an object deeper than searched),
  // and whether the next string in it is a key.
  const stack: { object: boolean; keys: Set<string> | null; keyDue: boolean }[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: find its end (escapes skipped); decode it only when it is a key searched.
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c ? 2 : 1;
      const top = stack.at(-1);
      if (top?.keyDue) {
        top.keyDue = false;
        if (top.keys) {
          const key = JSON.parse(text.slice(i, j + 1)) as string;
          if (top.keys.has(key)) return key;
          top.keys.add(key);
        }
      }
      i = j;
    } else if (c === 0x7b) stack.push({ object: true, keys: stack.length < DUPLICATE_KEY_DEPTH_MAX ? new Set() : null, keyDue: true });
    else if (c === 0x5b) stack.push({ object: false, keys: null, keyDue: false });
    else if (c === 0x7d || c === 0x5d) stack.pop();
    else if (c === 0x2c) {
      const top = stack.at(-1);
      if (top?.object) top.keyDue = true;
    }
  }
  return null;
}
