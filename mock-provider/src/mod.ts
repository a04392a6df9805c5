/**
 * A mock of the OpenAI and Anthropic HTTP APIs, faithful to their wire formats: JSON bodies, SSE framing
 * (`data: …\n\n`, `event: …`), usage fields, error bodies, 429 with retry headers, context-length errors,
 * slow and stalled streams, large bodies. It records what it saw (sizes and SHA-256, never content) and
 * when a client went away, so tests can assert byte-exactness and cancellation across the tunnel.
 */
import http from "node:http";
import { createHash, randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { parseDirectives, type Directives } from "./directives.ts";
import { MessageBatches } from "./message_batches.ts";

export interface MockRequestRecord {
  id: string;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  requestBytes: number;
  requestSha256: string;
  status: number;
  responseBytes: number;
  responseSha256: string;
  /** Response bytes handed to the socket so far (live, for backpressure tests). */
  responseBytesSoFar: number;
  /** Requests in flight at the mock when this one started (for concurrency tests). */
  concurrentAtStart: number;
  /** The request's `tag` directive, if any (benchmarks match their requests by it). */
  tag: string | null;
  /** Times are milliseconds since the epoch, with sub-millisecond precision (`performance`'s clock). */
  startedAt: number;
  /** Set when the client closed the connection before the response finished. */
  cancelledAt: number | null;
  finishedAt: number | null;
}

/**
 * A fault the whole mock shows while it is set (tests set it on one agent's provider to make that agent fail):
 * every inference call answers an error status (in the API's own error shape), or its connection is dropped
 * before any response byte, or the response is cut (connection destroyed) after `afterWrites` body writes.
 */
export type MockFault = { kind: "status"; status: number } | { kind: "drop" } | { kind: "cut"; afterWrites: number };

export interface MockProvider {
  /** The fault every new request meets; null = behave (the default). */
  fault: MockFault | null;
  origin: string;
  port: number;
  requests: MockRequestRecord[];
  /** Requests neither finished nor cancelled yet. */
  inFlight(): number;
  /** Resolves with the record once a request matching `pred` is cancelled by its client. */
  waitForCancel(pred: (r: MockRequestRecord) => boolean, timeoutMs: number): Promise<MockRequestRecord>;
  waitForRequest(pred: (r: MockRequestRecord) => boolean, timeoutMs: number): Promise<MockRequestRecord>;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;
/** A body field that should be text: the field, or the default when it is missing or is not a string. */
const textOr = (v: unknown, fallback: string) => (typeof v === "string" ? v : fallback);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Epoch milliseconds with sub-millisecond precision, on the same clock as `performance.now()`. */
export const preciseNow = () => performance.timeOrigin + performance.now();

function estimateTokens(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 4));
}

function word(i: number): string {
  return `w${i} `;
}

/** Content for chunk i, padded so the whole content is about `d.bytes` when asked. */
function chunkText(i: number, d: Directives): string {
  if (d.bytes === null) return word(i);
  const per = Math.max(1, Math.floor(d.bytes / Math.max(1, d.chunks)));
  return "x".repeat(per);
}

class Responder {
  #hash = createHash("sha256");
  bytes = 0;
  #writes = 0;
  constructor(
    readonly res: http.ServerResponse,
    readonly record: MockRequestRecord,
    readonly onSettled?: () => void,
    /** Destroy the connection instead of the body write after this many (a provider dying mid-stream). */
    readonly cutAfterWrites: number | null = null,
  ) {}

  head(status: number, headers: http.OutgoingHttpHeaders): void {
    this.record.status = status;
    this.res.writeHead(status, headers);
  }

  async write(text: string | Buffer): Promise<boolean> {
    if (this.res.destroyed || this.record.cancelledAt !== null) return false;
    if (this.cutAfterWrites !== null && this.#writes++ >= this.cutAfterWrites) {
      this.res.destroy();
      return false;
    }
    const buf = typeof text === "string" ? Buffer.from(text) : text;
    this.#hash.update(buf);
    this.bytes += buf.length;
    this.record.responseBytesSoFar = this.bytes;
    if (!this.res.write(buf)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.res.off("drain", done);
          this.res.off("close", done);
          resolve();
        };
        this.res.on("drain", done);
        this.res.on("close", done);
      });
    }
    return !this.res.destroyed && this.record.cancelledAt === null;
  }

  end(): void {
    this.record.responseBytes = this.bytes;
    this.record.responseSha256 = this.#hash.digest("hex");
    this.record.finishedAt = preciseNow();
    this.onSettled?.();
    this.res.end();
  }
}

function openAiError(status: number, d: Directives, contextTokens?: number): { status: number; headers: http.OutgoingHttpHeaders; body: Json } {
  if (contextTokens !== undefined) {
    return {
      status: 400,
      headers: {},
      body: {
        error: {
          message: `This model's maximum context length is ${contextTokens} tokens. However, your messages resulted in more tokens. Please reduce the length of the messages.`,
          type: "invalid_request_error",
          param: "messages",
          code: "context_length_exceeded",
        },
      },
    };
  }
  if (d.error === "context") {
    return {
      status: 400,
      headers: {},
      body: {
        error: {
          message:
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 250000 tokens. Please reduce the length of the messages.",
          type: "invalid_request_error",
          param: "messages",
          code: "context_length_exceeded",
        },
      },
    };
  }
  if (status === 429) {
    return {
      status,
      headers: {
        "retry-after": "1",
        "retry-after-ms": "1000",
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
      },
      body: {
        error: {
          message: "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 1s.",
          type: "requests",
          param: null,
          code: "rate_limit_exceeded",
        },
      },
    };
  }
  return {
    status,
    headers: {},
    body: { error: { message: "The server had an error while processing your request.", type: "server_error", param: null, code: null } },
  };
}

function anthropicError(status: number, d: Directives, contextTokens?: number): { status: number; headers: http.OutgoingHttpHeaders; body: Json } {
  if (contextTokens !== undefined) {
    return {
      status: 400,
      headers: {},
      body: { type: "error", error: { type: "invalid_request_error", message: `prompt is too long: ${contextTokens + 1} tokens > ${contextTokens} maximum` } },
    };
  }
  if (d.error === "context") {
    return {
      status: 400,
      headers: {},
      body: { type: "error", error: { type: "invalid_request_error", message: "prompt is too long: 250000 tokens > 200000 maximum" } },
    };
  }
  if (status === 429) {
    return {
      status,
      headers: {
        "retry-after": "1",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": new Date(Date.now() + 1000).toISOString(),
      },
      body: { type: "error", error: { type: "rate_limit_error", message: "Number of request tokens has exceeded your per-minute rate limit." } },
    };
  }
  if (status === 529 || status === 503) {
    return { status: 529, headers: {}, body: { type: "error", error: { type: "overloaded_error", message: "Overloaded" } } };
  }
  return { status, headers: {}, body: { type: "error", error: { type: "api_error", message: "Internal server error" } } };
}

const JSON_HEADERS = { "content-type": "application/json" };
const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" };

/** Largest piece handed to the socket at once, so a large body honours backpressure like a real server. */
const WRITE_BYTES_MAX = 64 * 1024;

async function sendJson(r: Responder, status: number, body: Json, extra: http.OutgoingHttpHeaders = {}): Promise<void> {
  const bytes = Buffer.from(JSON.stringify(body));
  r.head(status, { ...JSON_HEADERS, "content-length": bytes.length, "x-request-id": `req_${randomUUID()}`, ...extra });
  for (let i = 0; i < bytes.length; i += WRITE_BYTES_MAX) {
    if (!(await r.write(bytes.subarray(i, i + WRITE_BYTES_MAX)))) return;
  }
  r.end();
}

/** Streams chunk i = 0…chunks-1 through `emit`, honouring delays and stalls. Returns false if the client left. */
async function paced(d: Directives, emit: (i: number) => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < d.chunks; i++) {
    if (d.stallAfter !== null && i >= d.stallAfter) {
      await new Promise(() => {}); // stalled: never resolves; the client's close ends it
    }
    if (i > 0 && d.delayMs > 0) await sleep(d.delayMs);
    if (!(await emit(i))) return false;
  }
  return true;
}

const INSTRUCTION = /Reply with exactly: (\S+)\s*$/;

/**
 * The one instruction the mock follows, as a model would: a last user message ending `Reply with exactly: X`
 * (string content, or its text parts) is answered with X in a non-streamed answer. Null when there is none.
 */
function instructedReply(body: Json): string | null {
  const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : [];
  const last = messages[messages.length - 1] as { content?: unknown } | undefined;
  const content = last?.content;
  const text =
    typeof content === "string"
      ? content
      : Array.isArray(content)
        ? content.map((p) => (typeof p === "object" && p !== null && typeof (p as Json).text === "string" ? ((p as Json).text as string) : "")).join("")
        : "";
  return INSTRUCTION.exec(text)?.[1] ?? null;
}

/** Input tokens the usage reports for a request body of `bytes`. */
const reportedInput = (d: Directives, bytes: number) => d.inputTokens ?? estimateTokens(bytes);

/** Output tokens the usage reports for one result of `d.chunks` chunks. */
const reportedOutput = (d: Directives) => d.outputTokens ?? d.chunks;

async function chatCompletions(r: Responder, body: Json, d: Directives, requestBytes: number): Promise<void> {
  const model = textOr(body.model, "gpt-4o-mini");
  const id = `chatcmpl-${randomUUID().replaceAll("-", "").slice(0, 24)}`;
  const created = Math.floor(Date.now() / 1000);
  const promptTokens = reportedInput(d, requestBytes);
  // `n` results, each generated (and billed) separately.
  const n = typeof body.n === "number" && Number.isInteger(body.n) && body.n > 0 ? Math.min(body.n, 128) : 1;
  const indexes = Array.from({ length: n }, (_, i) => i);
  const completion = reportedOutput(d) * n;
  const usage = {
    prompt_tokens: promptTokens,
    completion_tokens: completion,
    total_tokens: promptTokens + completion,
    prompt_tokens_details: { cached_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0 },
  };
  if (body.stream === true) {
    const includeUsage = (body.stream_options as Json | undefined)?.include_usage === true && !d.noUsage;
    r.head(200, { ...SSE_HEADERS, "x-request-id": `req_${randomUUID()}` });
    const base = { id, object: "chat.completion.chunk", created, model, system_fingerprint: "fp_mock" };
    const frame = (obj: Json) => r.write(`data: ${JSON.stringify(obj)}\n\n`);
    const nullUsage = includeUsage ? { usage: null } : {};
    for (const index of indexes) {
      if (!(await frame({ ...base, choices: [{ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], ...nullUsage })))
        return;
    }
    const ok = await paced(d, async (i) => {
      for (const index of indexes) {
        if (!(await frame({ ...base, choices: [{ index, delta: { content: chunkText(i, d) }, logprobs: null, finish_reason: null }], ...nullUsage })))
          return false;
      }
      return true;
    });
    if (!ok) return;
    for (const index of indexes) {
      if (!(await frame({ ...base, choices: [{ index, delta: {}, logprobs: null, finish_reason: "stop" }], ...nullUsage }))) return;
    }
    if (includeUsage) await frame({ ...base, choices: [], usage });
    await r.write("data: [DONE]\n\n");
    r.end();
    return;
  }
  if (d.firstDelayMs === 0 && d.delayMs > 0) await sleep(d.delayMs * d.chunks);
  let content = "";
  for (let i = 0; i < d.chunks; i++) content += chunkText(i, d);
  content = instructedReply(body) ?? content;
  await sendJson(r, 200, {
    id,
    object: "chat.completion",
    created,
    model,
    system_fingerprint: "fp_mock",
    choices: indexes.map((index) => ({ index, message: { role: "assistant", content, refusal: null }, logprobs: null, finish_reason: "stop" })),
    usage,
  });
}

async function completions(r: Responder, body: Json, d: Directives, requestBytes: number): Promise<void> {
  const model = textOr(body.model, "gpt-3.5-turbo-instruct");
  const id = `cmpl-${randomUUID().replaceAll("-", "").slice(0, 24)}`;
  const created = Math.floor(Date.now() / 1000);
  const promptTokens = reportedInput(d, requestBytes);
  if (body.stream === true) {
    r.head(200, SSE_HEADERS);
    const ok = await paced(d, (i) =>
      r.write(
        `data: ${JSON.stringify({ id, object: "text_completion", created, model, choices: [{ text: chunkText(i, d), index: 0, logprobs: null, finish_reason: null }] })}\n\n`,
      ),
    );
    if (!ok) return;
    await r.write("data: [DONE]\n\n");
    r.end();
    return;
  }
  let text = "";
  for (let i = 0; i < d.chunks; i++) text += chunkText(i, d);
  await sendJson(r, 200, {
    id,
    object: "text_completion",
    created,
    model,
    choices: [{ text, index: 0, logprobs: null, finish_reason: "stop" }],
    usage: { prompt_tokens: promptTokens, completion_tokens: d.chunks, total_tokens: promptTokens + d.chunks },
  });
}

/**
 * The responses this mock made (as a provider account stores them, unless `store: false`), with their input
 * items: served by GET / DELETE `/v1/responses/{id}`, `POST …/cancel` and `GET …/input_items`. Each mock is
 * one provider account: another mock does not know them.
 */
/**
 * One page of input items as OpenAI lists them: `order` (default `desc`, newest first), `limit` (1–100, default
 * 20), and the cursors `after` / `before` (an item id: the page starts after it, or ends before it).
 */
function inputItemsPage(items: readonly Json[], query: URLSearchParams): Json {
  const ordered = query.get("order") === "asc" ? [...items] : [...items].reverse();
  const limit = Math.min(100, Math.max(1, Number(query.get("limit") ?? 20) || 20));
  const index = (id: string | null) => (id === null ? -1 : ordered.findIndex((item) => item.id === id));
  const after = index(query.get("after"));
  const before = index(query.get("before"));
  const from = after >= 0 ? after + 1 : 0;
  const to = before >= 0 ? before : ordered.length;
  const data = ordered.slice(from, Math.min(to, from + limit));
  return { object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: from + data.length < to };
}

/**
 * A background response's schedule on the mock's clock: `queued` until `startAt`, `in_progress` until `doneAt`,
 * then `end` with its usage; a cancel before then ends it `cancelled`, with the input and the output made so far.
 */
interface Background {
  startAt: number;
  doneAt: number;
  end: "completed" | "failed" | "incomplete";
  cancelledAt: number | null;
  inputTokens: number;
  outputTokens: number;
}

class StoredResponses {
  readonly #byId = new Map<string, { response: Json; input: Json[]; background?: Background }>();

  constructor(readonly now: () => number) {}

  /** The response as it stands now, or undefined. */
  get(id: string): Json | undefined {
    const stored = this.#byId.get(id);
    return stored ? this.#current(stored) : undefined;
  }

  /** Resolves once the mock's clock reaches `at` (checked every 20 ms: the clock may be a test's). */
  async until(at: number): Promise<void> {
    while (this.now() < at) await new Promise((resolve) => setTimeout(resolve, Math.min(20, Math.max(1, at - this.now()))));
  }

  /** A background response: kept whatever `store` says (the API requires it), its status computed on each read. */
  saveBackground(response: Json, body: Json, background: Background): void {
    this.save(response, { ...body, store: true });
    this.#byId.get(String(response.id))!.background = background;
  }

  /** The response as it stands now (a background one's status and usage by its schedule). */
  #current(stored: { response: Json; background?: Background }): Json {
    const bg = stored.background;
    if (!bg) return stored.response;
    const now = this.now();
    const at = bg.cancelledAt ?? now;
    const status = bg.cancelledAt !== null ? "cancelled" : at < bg.startAt ? "queued" : at < bg.doneAt ? "in_progress" : bg.end;
    if (status === "queued" || status === "in_progress") return { ...stored.response, status, usage: null, output: [] };
    const ran = Math.max(0, Math.min(at, bg.doneAt) - bg.startAt);
    const made = status === "failed" ? 0 : bg.doneAt > bg.startAt ? Math.floor((bg.outputTokens * ran) / (bg.doneAt - bg.startAt)) : bg.outputTokens;
    const usage = {
      input_tokens: bg.inputTokens,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: made,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: bg.inputTokens + made,
    };
    return { ...stored.response, status, usage, ...(status === "completed" ? {} : { output: [] }) };
  }

  save(response: Json, body: Json): void {
    if (body.store === false) return;
    const input =
      typeof body.input === "string"
        ? [{ type: "message", role: "user", content: [{ type: "input_text", text: body.input }] }]
        : Array.isArray(body.input)
          ? (body.input as Json[])
          : [];
    this.#byId.set(String(response.id), { response, input: input.map((item, i) => ({ id: `msg_in_${i}`, ...item })) });
  }

  /** Answers a stored-response call; false when `path` is none of them. */
  async serve(r: Responder, method: string, path: string, query: URLSearchParams): Promise<boolean> {
    const m = /^\/v1\/responses\/(resp_[A-Za-z0-9_-]+)(\/cancel|\/input_items)?$/.exec(path);
    if (!m) return false;
    const [, id, sub] = m;
    const stored = this.#byId.get(id!);
    const notFound = () =>
      sendJson(r, 404, { error: { message: `Response with id '${id}' not found.`, type: "invalid_request_error", param: null, code: null } });
    if (!stored) await notFound();
    else if (method === "GET" && sub === undefined) await sendJson(r, 200, this.#current(stored));
    else if (method === "DELETE" && sub === undefined) {
      this.#byId.delete(id!);
      await sendJson(r, 200, { id, object: "response.deleted", deleted: true });
    } else if (method === "POST" && sub === "/cancel" && stored.background) {
      const now = this.#current(stored);
      if (now.status === "queued" || now.status === "in_progress") stored.background.cancelledAt = this.now();
      await sendJson(r, 200, this.#current(stored));
    } else if (method === "POST" && sub === "/cancel") {
      // Only a response created in the background can be cancelled.
      await sendJson(r, 400, {
        error: { message: "Only responses created with background=true can be cancelled.", type: "invalid_request_error", param: null, code: null },
      });
    } else if (method === "GET" && sub === "/input_items") {
      await sendJson(r, 200, inputItemsPage(stored.input, query));
    } else await sendJson(r, 405, { error: { message: `Invalid method for URL (${method} ${path})`, type: "invalid_request_error", param: null, code: null } });
    return true;
  }
}

/** OpenAI's largest file `limit` on a list call, and its default. */
const FILE_LIST_LIMIT_MAX = 10_000;
/** Purposes OpenAI accepts on an upload. */
const FILE_PURPOSES = new Set(["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]);

/**
 * The files this mock keeps (the Files API of one provider account): upload (multipart `file` + `purpose`), list
 * (`purpose`, `limit`, `order`, `after`), retrieve, content (the bytes as uploaded) and delete. Another mock does
 * not know them, so a call that reaches the wrong account gets OpenAI's 404.
 */
class StoredFiles {
  readonly #byId = new Map<string, { object: Json; content: Buffer; contentType: string }>();
  #seq = 0;

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** A file's object and bytes, or undefined. */
  get(id: string): { object: Json; content: Buffer } | undefined {
    return this.#byId.get(id);
  }

  /** Stores a file (an upload, or one the provider made itself: a batch's output or error file); returns its id. */
  add(content: Buffer, purpose: string, filename: string, contentType = "application/jsonl"): string {
    const id = `file-${(++this.#seq).toString(36)}${randomUUID().replace(/-/g, "").slice(0, 20)}`;
    const object: Json = {
      id,
      object: "file",
      bytes: content.length,
      created_at: Math.floor(Date.now() / 1000),
      filename,
      purpose,
      status: "processed",
      expires_at: null,
      status_details: null,
    };
    this.#byId.set(id, { object, content, contentType });
    return id;
  }

  /** Answers a Files API call; false when `path` is none of them. */
  async serve(r: Responder, req: http.IncomingMessage, path: string, query: URLSearchParams, raw: Buffer): Promise<boolean> {
    const method = req.method ?? "GET";
    const error = (status: number, message: string, param: string | null = null) =>
      sendJson(r, status, { error: { message, type: "invalid_request_error", param, code: null } });
    if (path === "/v1/files") {
      if (method === "GET") {
        const limit = Number(query.get("limit") ?? FILE_LIST_LIMIT_MAX);
        if (!Number.isInteger(limit) || limit < 1 || limit > FILE_LIST_LIMIT_MAX) await error(400, "Invalid limit", "limit");
        else {
          const purpose = query.get("purpose");
          let all = [...this.#byId.values()].map((f) => f.object).filter((o) => purpose === null || o.purpose === purpose);
          if (query.get("order") !== "asc") all = all.reverse();
          const after = query.get("after");
          const from = after === null ? 0 : all.findIndex((o) => o.id === after) + 1;
          const data = all.slice(from, from + limit);
          await sendJson(r, 200, {
            object: "list",
            data,
            first_id: data[0]?.id ?? null,
            last_id: data.at(-1)?.id ?? null,
            has_more: from + data.length < all.length,
          });
        }
        return true;
      }
      if (method !== "POST") return false;
      let form: FormData;
      try {
        form = await new Response(new Uint8Array(raw), { headers: { "content-type": String(req.headers["content-type"] ?? "") } }).formData();
      } catch {
        await error(400, "Could not parse multipart form");
        return true;
      }
      const file = form.getAll("file");
      const purpose = form.getAll("purpose");
      if (file.length !== 1 || typeof file[0] === "string") await error(400, "Missing required parameter: 'file'.", "file");
      else if (purpose.length !== 1 || typeof purpose[0] !== "string" || !FILE_PURPOSES.has(purpose[0]))
        await error(400, "Invalid value for 'purpose'.", "purpose");
      else {
        const blob = file[0] as File;
        const id = this.add(Buffer.from(await blob.arrayBuffer()), purpose[0], blob.name, blob.type || "application/octet-stream");
        await sendJson(r, 200, this.#byId.get(id)!.object);
      }
      return true;
    }
    const m = /^\/v1\/files\/([^/]+)(\/content)?$/.exec(path);
    if (!m) return false;
    const [, id, content] = m;
    const stored = this.#byId.get(id!);
    if (!stored) await error(404, `No such File object: ${id}`, "id");
    else if (method === "GET" && content === undefined) await sendJson(r, 200, stored.object);
    else if (method === "GET") {
      r.head(200, { "content-type": stored.contentType, "content-length": stored.content.length });
      // In pieces, as a provider streams a download.
      for (let at = 0; at < stored.content.length; at += 64 * 1024) if (!(await r.write(stored.content.subarray(at, at + 64 * 1024)))) return true;
      r.end();
    } else if (method === "DELETE" && content === undefined) {
      this.#byId.delete(id!);
      await sendJson(r, 200, { id, object: "file", deleted: true });
    } else await sendJson(r, 405, { error: { message: `Invalid method for URL (${method} ${path})`, type: "invalid_request_error", param: null, code: null } });
    return true;
  }
}

/** One request of a batch as the mock runs it: its usage and answer made up front, by its own body's directives. */
interface BatchLine {
  customId: string;
  status: number;
  inputTokens: number;
  outputTokens: number;
  body: Json;
}

/**
 * A batch's schedule on the mock's clock (the one background responses use): `validating` until `startAt`
 * (`bg_queue_ms` of the first line), `in_progress` until `doneAt` (`bg_run_ms`), running its lines evenly in
 * between, then `completed`. A cancel ends it `cancelled` with the lines run by then. Its `usage` sums the lines
 * run; its output file (lines answered 200) and error file (the others) are made when it ends.
 */
interface MockBatch {
  object: Json;
  lines: BatchLine[];
  startAt: number;
  doneAt: number;
  cancelledAt: number | null;
  files: { output: string | null; error: string | null } | null;
}

class StoredBatches {
  readonly #byId = new Map<string, MockBatch>();

  constructor(
    readonly now: () => number,
    private readonly files: StoredFiles,
  ) {}

  /** Answers a Batch API call; false when `path` is none of them. */
  async serve(r: Responder, method: string, path: string, raw: Buffer): Promise<boolean> {
    const error = (status: number, message: string, param: string | null = null) =>
      sendJson(r, status, { error: { message, type: "invalid_request_error", param, code: null } });
    if (path === "/v1/batches" && method === "POST") {
      let body: Json;
      try {
        body = JSON.parse(raw.toString("utf8")) as Json;
      } catch {
        await error(400, "We could not parse the JSON body of your request.");
        return true;
      }
      const file = typeof body.input_file_id === "string" ? this.files.get(body.input_file_id) : undefined;
      if (!file) await error(404, `No such File object: ${String(body.input_file_id)}`, "input_file_id");
      else if (file.object.purpose !== "batch") await error(400, "The input file must be uploaded with purpose 'batch'.", "input_file_id");
      else if (body.completion_window !== "24h") await error(400, "Invalid value for 'completion_window'.", "completion_window");
      else await sendJson(r, 200, this.#create(body, file.content));
      return true;
    }
    const m = /^\/v1\/batches\/(batch_[A-Za-z0-9_-]+)(\/cancel)?$/.exec(path);
    if (!m) return false;
    const batch = this.#byId.get(m[1]!);
    if (!batch) await error(404, `No batch found with id '${m[1]}'.`);
    else if (method === "GET" && m[2] === undefined) await sendJson(r, 200, this.#current(batch));
    else if (method === "POST" && m[2] === "/cancel") {
      const now = this.#current(batch);
      if (now.status === "validating" || now.status === "in_progress") {
        batch.cancelledAt = this.now();
        await sendJson(r, 200, { ...now, status: "cancelling", cancelling_at: Math.floor(batch.cancelledAt / 1000) });
      } else await error(409, `Cannot cancel a batch with status '${String(now.status)}'.`);
    } else await error(405, `Invalid method for URL (${method} ${path})`);
    return true;
  }

  #create(body: Json, content: Buffer): Json {
    const lines: BatchLine[] = [];
    for (const text of content.toString("utf8").split("\n")) {
      if (text.trim() === "") continue;
      const line = JSON.parse(text) as Json;
      const reqBody = (line.body ?? {}) as Json;
      const bytes = Buffer.from(JSON.stringify(reqBody));
      const d = parseDirectives(bytes);
      lines.push({
        customId: String(line.custom_id),
        status: d.status ?? 200,
        inputTokens: reportedInput(d, bytes.length),
        outputTokens: reportedOutput(d),
        body: reqBody,
      });
    }
    const first = parseDirectives(content);
    const now = this.now();
    const id = `batch_${randomUUID().replaceAll("-", "")}`;
    const object: Json = {
      id,
      object: "batch",
      endpoint: body.endpoint,
      errors: null,
      input_file_id: body.input_file_id,
      completion_window: "24h",
      status: "validating",
      output_file_id: null,
      error_file_id: null,
      created_at: Math.floor(now / 1000),
      in_progress_at: null,
      expires_at: Math.floor(now / 1000) + 86_400,
      finalizing_at: null,
      completed_at: null,
      failed_at: null,
      expired_at: null,
      cancelling_at: null,
      cancelled_at: null,
      request_counts: { total: lines.length, completed: 0, failed: 0 },
      metadata: body.metadata ?? null,
    };
    const startAt = now + first.bgQueueMs;
    this.#byId.set(id, { object, lines, startAt, doneAt: startAt + first.bgRunMs, cancelledAt: null, files: null });
    return object;
  }

  /** The batch as it stands now. */
  #current(b: MockBatch): Json {
    const at = b.cancelledAt ?? this.now();
    const status = b.cancelledAt !== null ? "cancelled" : at < b.startAt ? "validating" : at < b.doneAt ? "in_progress" : "completed";
    const span = b.doneAt - b.startAt;
    const ranCount = at < b.startAt ? 0 : span <= 0 || at >= b.doneAt ? b.lines.length : Math.floor((b.lines.length * (at - b.startAt)) / span);
    const ran = b.lines.slice(0, ranCount);
    const ok = ran.filter((l) => l.status === 200);
    const counts = { total: b.lines.length, completed: ok.length, failed: ran.length - ok.length };
    const out: Json = { ...b.object, status, request_counts: counts };
    if (at >= b.startAt) out.in_progress_at = Math.floor(b.startAt / 1000);
    if (status === "validating" || status === "in_progress") return out;
    const input = ok.reduce((n, l) => n + l.inputTokens, 0);
    const output = ok.reduce((n, l) => n + l.outputTokens, 0);
    out.usage = {
      input_tokens: input,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: output,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: input + output,
    };
    b.files ??= this.#results(
      b,
      ok,
      ran.filter((l) => l.status !== 200),
    );
    out.output_file_id = b.files.output;
    out.error_file_id = b.files.error;
    const end = Math.floor(at / 1000);
    if (status === "cancelled") Object.assign(out, { cancelling_at: end, cancelled_at: end });
    else Object.assign(out, { finalizing_at: end, completed_at: end });
    return out;
  }

  #results(b: MockBatch, ok: BatchLine[], failed: BatchLine[]): { output: string | null; error: string | null } {
    const jsonl = (lines: BatchLine[], row: (l: BatchLine) => Json) => Buffer.from(lines.map((l) => `${JSON.stringify(row(l))}\n`).join(""));
    const id = () => `batch_req_${randomUUID().replaceAll("-", "")}`;
    const output = ok.length
      ? this.files.add(
          jsonl(ok, (l) => ({
            id: id(),
            custom_id: l.customId,
            response: {
              status_code: 200,
              request_id: `req_${randomUUID().replaceAll("-", "")}`,
              body: {
                id: `chatcmpl-${randomUUID().replaceAll("-", "").slice(0, 24)}`,
                object: "chat.completion",
                model: textOr(l.body.model, "gpt-4o-mini"),
                choices: [{ index: 0, message: { role: "assistant", content: `answer to ${l.customId}` }, finish_reason: "stop" }],
                usage: { prompt_tokens: l.inputTokens, completion_tokens: l.outputTokens, total_tokens: l.inputTokens + l.outputTokens },
              },
            },
            error: null,
          })),
          "batch_output",
          `${String(b.object.id)}_output.jsonl`,
        )
      : null;
    const error = failed.length
      ? this.files.add(
          jsonl(failed, (l) => ({
            id: id(),
            custom_id: l.customId,
            response: {
              status_code: l.status,
              request_id: `req_${randomUUID().replaceAll("-", "")}`,
              body: { error: { message: "mock failure", type: "server_error" } },
            },
            error: null,
          })),
          "batch_output",
          `${String(b.object.id)}_error.jsonl`,
        )
      : null;
    return { output, error };
  }
}

/** Every `file_id` string a JSON request names, at any depth. */
function namedFileIds(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) namedFileIds(v, out);
  else if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (k === "file_id" && typeof v === "string") out.push(v);
      else namedFileIds(v, out);
    }
  }
  return out;
}

async function responses(r: Responder, body: Json, d: Directives, requestBytes: number, stored: StoredResponses): Promise<void> {
  const model = textOr(body.model, "gpt-4o-mini");
  const id = `resp_${randomUUID().replaceAll("-", "")}`;
  const msgId = `msg_${randomUUID().replaceAll("-", "")}`;
  const created_at = Math.floor(Date.now() / 1000);
  const inputTokens = reportedInput(d, requestBytes);
  let text = "";
  const response = (status: string, usage: Json | null) => ({
    id,
    object: "response",
    created_at,
    status,
    model,
    output:
      status === "completed"
        ? [{ type: "message", id: msgId, status: "completed", role: "assistant", content: [{ type: "output_text", text, annotations: [] }] }]
        : [],
    usage,
  });
  const completedResponse = () =>
    response("completed", {
      input_tokens: inputTokens,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: reportedOutput(d),
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: inputTokens + reportedOutput(d),
    });
  if (body.background === true) {
    // Runs after the call on the provider's side: queued, then in progress, then its end (its usage only then).
    const now = stored.now();
    const startAt = now + d.bgQueueMs;
    const background: Background = { startAt, doneAt: startAt + d.bgRunMs, end: d.bgEnd, cancelledAt: null, inputTokens, outputTokens: reportedOutput(d) };
    for (let i = 0; i < d.chunks; i++) text += chunkText(i, d);
    const full = { ...response("completed", null), background: true };
    stored.saveBackground(full, body, background);
    const queued = stored.get(id)!;
    if (body.stream !== true) return sendJson(r, 200, queued);
    // Streamed: the events as the response runs; a client that leaves does not stop it.
    r.head(200, SSE_HEADERS);
    let seq = 0;
    const ev = (type: string, data: Json) => r.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`);
    if (!(await ev("response.created", { response: queued }))) return;
    const ok = await paced(d, (i) => ev("response.output_text.delta", { item_id: msgId, output_index: 0, content_index: 0, delta: chunkText(i, d) }));
    if (!ok) return;
    await stored.until(background.doneAt);
    const final = stored.get(id);
    if (final && typeof final.status === "string" && final.status !== "cancelled") await ev(`response.${final.status}`, { response: final });
    r.end();
    return;
  }
  if (body.stream === true) {
    r.head(200, SSE_HEADERS);
    let seq = 0;
    const ev = (type: string, data: Json) => r.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`);
    if (!(await ev("response.created", { response: response("in_progress", null) }))) return;
    stored.save(response("in_progress", null), body);
    if (
      !(await ev("response.output_item.added", {
        output_index: 0,
        item: { type: "message", id: msgId, status: "in_progress", role: "assistant", content: [] },
      }))
    )
      return;
    const ok = await paced(d, (i) => {
      const delta = chunkText(i, d);
      text += delta;
      return ev("response.output_text.delta", { item_id: msgId, output_index: 0, content_index: 0, delta });
    });
    if (!ok) return;
    await ev("response.output_text.done", { item_id: msgId, output_index: 0, content_index: 0, text });
    const completed = completedResponse();
    stored.save(completed, body);
    await ev("response.completed", { response: completed });
    r.end();
    return;
  }
  for (let i = 0; i < d.chunks; i++) text += chunkText(i, d);
  const completed = completedResponse();
  stored.save(completed, body);
  await sendJson(r, 200, completed);
}

async function embeddings(r: Responder, body: Json, d: Directives, requestBytes: number): Promise<void> {
  const inputs = Array.isArray(body.input) ? body.input : [body.input];
  const dims = typeof body.dimensions === "number" ? body.dimensions : 8;
  const base64 = body.encoding_format === "base64";
  const data = inputs.map((_, index) => {
    const vector = Array.from({ length: dims }, (_, j) => Number((Math.sin(index + j) / 2).toFixed(6)));
    return { object: "embedding", index, embedding: base64 ? Buffer.from(new Float32Array(vector).buffer).toString("base64") : vector };
  });
  const tokens = reportedInput(d, requestBytes);
  await sendJson(r, 200, {
    object: "list",
    data,
    model: textOr(body.model, "text-embedding-3-small"),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  });
}

async function messages(r: Responder, body: Json, d: Directives, requestBytes: number): Promise<void> {
  const model = textOr(body.model, "claude-haiku-4-5");
  const id = `msg_${randomUUID().replaceAll("-", "").slice(0, 24)}`;
  const inputTokens = reportedInput(d, requestBytes);
  const common = { "request-id": `req_${randomUUID()}`, "anthropic-organization-id": "org-mock" };
  if (body.stream === true) {
    r.head(200, { ...SSE_HEADERS, ...common });
    const ev = (type: string, data: Json) => r.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    if (
      !(await ev("message_start", {
        message: {
          id,
          type: "message",
          role: "assistant",
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: inputTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 1 },
        },
      }))
    )
      return;
    if (!(await ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } }))) return;
    if (!(await ev("ping", {}))) return;
    const ok = await paced(d, (i) => ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: chunkText(i, d) } }));
    if (!ok) return;
    await ev("content_block_stop", { index: 0 });
    await ev("message_delta", { delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: reportedOutput(d) } });
    await ev("message_stop", {});
    r.end();
    return;
  }
  let text = "";
  for (let i = 0; i < d.chunks; i++) text += chunkText(i, d);
  text = instructedReply(body) ?? text;
  await sendJson(
    r,
    200,
    {
      id,
      type: "message",
      role: "assistant",
      model,
      content: [{ type: "text", text }],
      stop_reason: "end_turn",
      stop_sequence: null,
      usage: { input_tokens: inputTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: reportedOutput(d) },
    },
    common,
  );
}

const MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small", "claude-haiku-4-5", "claude-sonnet-4-5"];

async function handle(
  req: http.IncomingMessage,
  r: Responder,
  raw: Buffer,
  d: Directives,
  fault: MockFault | null,
  options: MockOptions,
  stored: StoredResponses,
  files: StoredFiles,
  messageBatches: MessageBatches,
  batches: StoredBatches,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://mock");
  const path = url.pathname;
  const isAnthropic = path === "/v1/messages" || path.startsWith("/v1/messages/");
  if (req.method === "GET" && path === "/v1/models") {
    const window = options.contextTokens !== undefined && options.advertiseContext !== false ? { context_window: options.contextTokens } : {};
    await sendJson(r, 200, { object: "list", data: MODELS.map((id) => ({ id, object: "model", created: 1_700_000_000, owned_by: "mock", ...window })) });
    return;
  }
  // The agent authenticates upstream with the owner's key; the mock checks one is present.
  const key = isAnthropic ? req.headers["x-api-key"] : (req.headers["authorization"] ?? req.headers["api-key"]);
  if (!key) {
    const body = isAnthropic
      ? { type: "error", error: { type: "authentication_error", message: "x-api-key header is required" } }
      : { error: { message: "You didn't provide an API key.", type: "invalid_request_error", param: null, code: null } };
    await sendJson(r, 401, body);
    return;
  }
  if (await stored.serve(r, req.method ?? "GET", path, url.searchParams)) return;
  const wire = { json: (status: number, body: Json) => sendJson(r, status, body), head: r.head.bind(r), write: r.write.bind(r), end: r.end.bind(r) };
  if (isAnthropic && (await messageBatches.serve(wire, req.method ?? "GET", path, url.searchParams, raw, `http://${req.headers.host ?? "127.0.0.1"}`))) return;
  if (!isAnthropic && (await files.serve(r, req, path, url.searchParams, raw))) return;
  if (!isAnthropic && (await batches.serve(r, req.method ?? "GET", path, raw))) return;
  const contentType = String(req.headers["content-type"] ?? "");
  if (contentType.startsWith("multipart/form-data")) {
    // Audio transcription / image edit: answer with the byte count so tests see the body arrived whole.
    if (d.status !== null) {
      const e = openAiError(d.status, d);
      await sendJson(r, e.status, e.body, e.headers);
      return;
    }
    if (path.startsWith("/v1/audio/")) await sendJson(r, 200, { text: `received ${raw.length} bytes`, usage: { type: "duration", seconds: 1 } });
    else
      await sendJson(r, 200, { created: Math.floor(Date.now() / 1000), data: [{ b64_json: Buffer.from(`received ${raw.length} bytes`).toString("base64") }] });
    return;
  }
  let body: Json;
  try {
    body = JSON.parse(raw.toString("utf8")) as Json;
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new Error("not an object");
  } catch {
    const e = isAnthropic
      ? { type: "error", error: { type: "invalid_request_error", message: "Request body is not valid JSON" } }
      : { error: { message: "We could not parse the JSON body of your request.", type: "invalid_request_error", param: null, code: null } };
    await sendJson(r, 400, e);
    return;
  }
  // A request naming a file this account does not hold is refused as OpenAI refuses it.
  const unknownFile = isAnthropic ? undefined : namedFileIds(body).find((id) => !files.has(id));
  if (unknownFile !== undefined) {
    await sendJson(r, 404, { error: { message: `No such File object: ${unknownFile}`, type: "invalid_request_error", param: null, code: null } });
    return;
  }
  if (d.firstDelayMs > 0) await sleep(d.firstDelayMs);
  if (r.record.cancelledAt !== null) return;
  if (fault?.kind === "drop") {
    r.res.destroy();
    return;
  }
  if (fault?.kind === "status") {
    const e = isAnthropic ? anthropicError(fault.status, d) : openAiError(fault.status, d);
    await sendJson(r, e.status, e.body, e.headers);
    return;
  }
  const maxTokens = Number(body.max_tokens ?? body.max_completion_tokens ?? body.max_output_tokens ?? 0) || 0;
  if (options.contextTokens !== undefined && estimateTokens(raw.length) + maxTokens > options.contextTokens) {
    const e = isAnthropic ? anthropicError(400, d, options.contextTokens) : openAiError(400, d, options.contextTokens);
    await sendJson(r, e.status, e.body, e.headers);
    return;
  }
  if (d.status !== null || d.error !== null) {
    const e = isAnthropic ? anthropicError(d.status ?? 400, d) : openAiError(d.status ?? 400, d);
    await sendJson(r, e.status, e.body, e.headers);
    return;
  }
  const substitute = options.substitute;
  if (substitute) {
    // Another model answers: its name in the answer, its tokenizer's count of the same prompt.
    if (substitute.model !== undefined) body.model = substitute.model;
    if (substitute.inputTokensFactor !== undefined && d.inputTokens === null)
      d = { ...d, inputTokens: Math.round(estimateTokens(raw.length) * substitute.inputTokensFactor) };
  }
  switch (path) {
    case "/v1/chat/completions":
      return chatCompletions(r, body, d, raw.length);
    case "/v1/completions":
      return completions(r, body, d, raw.length);
    case "/v1/responses":
      return responses(r, body, d, raw.length, stored);
    case "/v1/embeddings":
      return embeddings(r, body, d, raw.length);
    case "/v1/messages":
      return messages(r, body, d, raw.length);
    // Free at the provider: counts the prompt's tokens, generates nothing.
    case "/v1/messages/count_tokens":
      return sendJson(r, 200, { input_tokens: estimateTokens(raw.length) });
    case "/v1/images/generations":
      return sendJson(r, 200, { created: Math.floor(Date.now() / 1000), data: [{ b64_json: Buffer.from("png").toString("base64") }] });
    case "/v1/audio/speech": {
      const audio = Buffer.alloc(d.bytes ?? 4096, 7);
      r.head(200, { "content-type": "audio/mpeg", "content-length": audio.length });
      await r.write(audio);
      r.end();
      return;
    }
    default:
      await sendJson(
        r,
        404,
        isAnthropic
          ? { type: "error", error: { type: "not_found_error", message: `Unknown path ${path}` } }
          : { error: { message: `Invalid URL (${req.method} ${path})`, type: "invalid_request_error", param: null, code: null } },
      );
  }
}

/**
 * A provider's per-minute limit (requests or tokens), as OpenAI and Anthropic describe theirs: a bucket of `perMinute`
 * units refilled continuously. Above it the mock answers 429 in the family's shape with the headers the providers send.
 */
class RateBucket {
  #level: number;
  #at = Date.now();
  constructor(readonly perMinute: number) {
    this.#level = perMinute;
  }

  /** Takes `amount` units: null when admitted, else the wait until they are available, ms. */
  take(amount = 1): number | null {
    this.#refill();
    if (this.#level >= amount) {
      this.#level -= amount;
      return null;
    }
    return Math.ceil(((Math.min(amount, this.perMinute) - this.#level) * 60_000) / this.perMinute);
  }

  remaining(): number {
    this.#refill();
    return Math.max(0, Math.floor(this.#level));
  }

  #refill(): void {
    const now = Date.now();
    this.#level = Math.min(this.perMinute, this.#level + ((now - this.#at) * this.perMinute) / 60_000);
    this.#at = now;
  }
}

/** What a request counts against a tokens-per-minute limit: its estimated input plus the output it may ask for (as OpenAI counts). */
function rateTokens(raw: Buffer): number {
  let maxTokens = 0;
  try {
    const body = JSON.parse(raw.toString("utf8")) as Json;
    maxTokens = Number(body.max_tokens ?? body.max_completion_tokens ?? body.max_output_tokens ?? 0) || 0;
  } catch {
    /* not JSON: input only */
  }
  return estimateTokens(raw.length) + maxTokens;
}

/** The headers OpenAI and Anthropic send about a tokens-per-minute limit. */
function tokenHeaders(path: string, tpm: number, remaining: number, resetMs: number): http.OutgoingHttpHeaders {
  return path.startsWith("/v1/messages")
    ? {
        "anthropic-ratelimit-tokens-limit": String(tpm),
        "anthropic-ratelimit-tokens-remaining": String(remaining),
        "anthropic-ratelimit-tokens-reset": new Date(Date.now() + resetMs).toISOString(),
      }
    : {
        "x-ratelimit-limit-tokens": String(tpm),
        "x-ratelimit-remaining-tokens": String(remaining),
        "x-ratelimit-reset-tokens": `${(resetMs / 1000).toFixed(3)}s`,
      };
}

function tokensLimited(path: string, tpm: number, waitMs: number): { headers: http.OutgoingHttpHeaders; body: Json } {
  const seconds = String(Math.max(1, Math.ceil(waitMs / 1000)));
  const headers = { "retry-after": seconds, ...tokenHeaders(path, tpm, 0, waitMs) };
  if (path.startsWith("/v1/messages")) {
    return {
      headers,
      body: {
        type: "error",
        error: { type: "rate_limit_error", message: `This request would exceed your organization's rate limit of ${tpm} input tokens per minute.` },
      },
    };
  }
  return {
    headers: { ...headers, "retry-after-ms": String(waitMs) },
    body: {
      error: {
        message: `Rate limit reached for tokens per min (TPM): Limit ${tpm}. Please try again in ${seconds}s.`,
        type: "tokens",
        param: null,
        code: "rate_limit_exceeded",
      },
    },
  };
}

function rateLimited(path: string, rpm: number, waitMs: number): { headers: http.OutgoingHttpHeaders; body: Json } {
  const seconds = String(Math.max(1, Math.ceil(waitMs / 1000)));
  if (path.startsWith("/v1/messages")) {
    return {
      headers: {
        "retry-after": seconds,
        "anthropic-ratelimit-requests-limit": String(rpm),
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": new Date(Date.now() + waitMs).toISOString(),
      },
      body: {
        type: "error",
        error: { type: "rate_limit_error", message: `This request would exceed your organization's rate limit of ${rpm} requests per minute.` },
      },
    };
  }
  return {
    headers: {
      "retry-after": seconds,
      "retry-after-ms": String(waitMs),
      "x-ratelimit-limit-requests": String(rpm),
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-requests": `${(waitMs / 1000).toFixed(3)}s`,
    },
    body: {
      error: {
        message: `Rate limit reached for requests per min (RPM): Limit ${rpm}. Please try again in ${seconds}s.`,
        type: "requests",
        param: null,
        code: "rate_limit_exceeded",
      },
    },
  };
}

export interface MockOptions {
  port?: number;
  host?: string;
  /** Answer 429 (with the providers' rate-limit headers) above this many POSTs per minute; unset = no limit. */
  rpmLimit?: number;
  /**
   * Answer 429 (with the providers' token rate-limit headers) when a POST's estimated input plus its `max_tokens`
   * exceeds what is left of this many tokens per minute; unset = no limit.
   */
  tpmLimit?: number;
  /** With `rpmLimit` / `tpmLimit`: send the rate-limit headers on every answer too, as the providers do (default true). */
  rateLimitHeaders?: boolean;
  /**
   * The context window of every model, tokens: a request whose estimated input plus `max_tokens` exceeds it is
   * answered with the API's context-length error naming this window. Unset: no limit.
   */
  contextTokens?: number;
  /** List `context_window` in `GET /v1/models` (as some providers' metadata does); default true when contextTokens is set. */
  advertiseContext?: boolean;
  /**
   * Play a provider (or relay) that answers with another model than the one asked for: `model` is the model field
   * of its answers; `inputTokensFactor` multiplies the input tokens its usage reports (another tokenizer's count).
   */
  substitute?: { model?: string; inputTokensFactor?: number };
  /** The clock background responses and message batches run on (epoch ms); default `Date.now`. A test may move it by hand. */
  now?: () => number;
}

export async function startMockProvider(options: MockOptions = {}): Promise<MockProvider> {
  const bucket = options.rpmLimit ? new RateBucket(options.rpmLimit) : null;
  const tokenBucket = options.tpmLimit ? new RateBucket(options.tpmLimit) : null;
  const requests: MockRequestRecord[] = [];
  const stored = new StoredResponses(options.now ?? Date.now);
  const files = new StoredFiles();
  const messageBatches = new MessageBatches(options.now ?? Date.now);
  const batches = new StoredBatches(options.now ?? Date.now, files);
  let inFlight = 0;
  const mock = { fault: null } as MockProvider;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  const server = http.createServer((req, res) => {
    const record: MockRequestRecord = {
      id: `mock_${requests.length + 1}`,
      method: req.method ?? "GET",
      path: req.url ?? "/",
      headers: req.headers,
      requestBytes: 0,
      requestSha256: "",
      status: 0,
      responseBytes: 0,
      responseSha256: "",
      responseBytesSoFar: 0,
      concurrentAtStart: inFlight,
      tag: null,
      startedAt: preciseNow(),
      cancelledAt: null,
      finishedAt: null,
    };
    requests.push(record);
    inFlight++;
    const hash = createHash("sha256");
    const chunks: Buffer[] = [];
    res.on("close", () => {
      if (record.finishedAt === null && record.cancelledAt === null) {
        record.cancelledAt = preciseNow();
        inFlight--;
        notify();
      }
    });
    req.on("data", (c: Buffer) => {
      hash.update(c);
      record.requestBytes += c.length;
      chunks.push(c);
    });
    req.on("end", () => {
      record.requestSha256 = hash.digest("hex");
      notify();
      const fault = mock.fault;
      const r = new Responder(res, record, () => inFlight--, fault?.kind === "cut" ? fault.afterWrites : null);
      const raw = Buffer.concat(chunks);
      const directives = parseDirectives(raw);
      record.tag = directives.tag;
      const waitMs = bucket && req.method === "POST" ? bucket.take() : null;
      if (bucket && waitMs !== null) {
        const limited = rateLimited(record.path, bucket.perMinute, waitMs);
        sendJson(r, 429, limited.body, limited.headers).then(notify, () => res.destroy());
        return;
      }
      const tokenWaitMs = tokenBucket && req.method === "POST" ? tokenBucket.take(rateTokens(raw)) : null;
      if (tokenBucket && tokenWaitMs !== null) {
        const limited = tokensLimited(record.path, tokenBucket.perMinute, tokenWaitMs);
        sendJson(r, 429, limited.body, limited.headers).then(notify, () => res.destroy());
        return;
      }
      if (tokenBucket && options.rateLimitHeaders !== false && req.method === "POST") {
        const left = tokenBucket.remaining();
        const headers = tokenHeaders(record.path, tokenBucket.perMinute, left, Math.ceil(((tokenBucket.perMinute - left) * 60_000) / tokenBucket.perMinute));
        for (const [name, value] of Object.entries(headers)) res.setHeader(name, value!);
      }
      if (bucket && options.rateLimitHeaders !== false && req.method === "POST") {
        // As OpenAI and Anthropic do, every answer says the key's limit and what is left of it.
        const left = String(bucket.remaining());
        const resetMs = Math.ceil(60_000 / bucket.perMinute);
        if (record.path.startsWith("/v1/messages")) {
          res.setHeader("anthropic-ratelimit-requests-limit", String(bucket.perMinute));
          res.setHeader("anthropic-ratelimit-requests-remaining", left);
          res.setHeader("anthropic-ratelimit-requests-reset", new Date(Date.now() + resetMs).toISOString());
        } else {
          res.setHeader("x-ratelimit-limit-requests", String(bucket.perMinute));
          res.setHeader("x-ratelimit-remaining-requests", left);
          res.setHeader("x-ratelimit-reset-requests", `${(resetMs / 1000).toFixed(3)}s`);
        }
      }
      handle(req, r, raw, directives, fault, options, stored, files, messageBatches, batches).then(notify, (error: unknown) => {
        console.error("mock provider error", error);
        res.destroy();
      });
    });
  });
  server.keepAliveTimeout = 5000;
  // A provider's front end queues bursts of connections; so does the mock (Node's default backlog is 511).
  await new Promise<void>((resolve) => server.listen({ port: options.port ?? 0, host: options.host ?? "127.0.0.1", backlog: 4096 }, resolve));
  const { port } = server.address() as AddressInfo;
  const waitFor = (pred: (r: MockRequestRecord) => boolean, timeoutMs: number, what: string) =>
    new Promise<MockRequestRecord>((resolve, reject) => {
      const check = () => {
        const found = requests.find(pred);
        if (found) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`mock provider: no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  const api: Omit<MockProvider, "fault"> = {
    origin: `http://127.0.0.1:${port}`,
    port,
    requests,
    inFlight: () => inFlight,
    waitForCancel: (pred, timeoutMs) => waitFor((r) => r.cancelledAt !== null && pred(r), timeoutMs, "cancelled request"),
    waitForRequest: (pred, timeoutMs) => waitFor(pred, timeoutMs, "request"),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return Object.assign(mock, api);
}
