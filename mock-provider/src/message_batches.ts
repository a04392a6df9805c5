/**
 * Anthropic's Message Batches API as one provider account keeps it, on the mock's clock: create
 * (`POST /v1/messages/batches`, `{requests: [{custom_id, params}]}`), retrieve, list (`before_id`, `after_id`,
 * `limit`), cancel, results (JSON Lines, streamed once the batch has ended) and delete (ended batches only).
 *
 * A batch's requests finish one after another over `bg_run_ms` of the mock's clock (a `[mock …]` directive in the
 * first request's params; default 1 s): request i of n at created + run × (i+1)/n. Each request's own directives
 * set its result: `status=…` makes it `errored`, else it `succeeded` with a message whose usage reports
 * `input_tokens` (default its params' bytes ÷ 4) and `output_tokens` (default `chunks`), and `cache_read=` /
 * `cache_write=` tokens when set. A cancel makes every request not finished by then `canceled`; the batch is
 * `canceling` for CANCEL_MS of the clock, then `ended`. A request not finished within 24 h is `expired`.
 */
import { randomUUID } from "node:crypto";
import type http from "node:http";
import { parseDirectives } from "./directives.ts";

type Json = Record<string, unknown>;

/** How a batch answer is written (the mock's responder). */
export interface BatchWire {
  json(status: number, body: Json): Promise<void>;
  head(status: number, headers: http.OutgoingHttpHeaders): void;
  write(chunk: Buffer): Promise<boolean>;
  end(): void;
}

/** Mock-clock time a cancelled batch stays `canceling` before it is `ended`, ms. */
export const CANCEL_MS = 100;
/** A batch's lifetime at the provider: requests not finished by then are `expired`, ms. */
export const BATCH_EXPIRY_MS = 24 * 3_600_000;
/** Anthropic's largest list page, and its default. */
const LIST_LIMIT_MAX = 1_000;
const LIST_LIMIT_DEFAULT = 20;
const CUSTOM_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** Results written per socket write, bytes (a download arrives in pieces). */
const RESULTS_WRITE_BYTES = 64 * 1024;

interface BatchRequest {
  customId: string;
  /** Its message's id, fixed at creation: every read of the results is the same bytes. */
  messageId: string;
  doneAt: number;
  errored: boolean;
  model: string;
  inputTokens: number;
  outputTokens: number;
  cacheRead: number;
  cacheWrite: number;
  text: string;
}

interface Batch {
  id: string;
  createdAt: number;
  requests: BatchRequest[];
  cancelledAt: number | null;
}

const error = (type: string, message: string): Json => ({ type: "error", error: { type, message } });

export class MessageBatches {
  readonly #byId = new Map<string, Batch>();

  constructor(readonly now: () => number) {}

  /** Answers a Message Batches call; false when `path` is none of them. */
  async serve(w: BatchWire, method: string, path: string, query: URLSearchParams, raw: Buffer, origin: string): Promise<boolean> {
    if (path === "/v1/messages/batches") {
      if (method === "POST") await this.#create(w, raw, origin);
      else if (method === "GET") await this.#list(w, query, origin);
      else await w.json(405, error("invalid_request_error", `Method ${method} not allowed`));
      return true;
    }
    const m = /^\/v1\/messages\/batches\/([^/]+)(\/cancel|\/results)?$/.exec(path);
    if (!m) return false;
    const [, id, sub] = m;
    const batch = this.#byId.get(id!);
    if (!batch) {
      await w.json(404, error("not_found_error", `No batch found with id '${id}'`));
      return true;
    }
    if (method === "GET" && sub === undefined) await w.json(200, this.#object(batch, origin));
    else if (method === "POST" && sub === "/cancel") {
      if (this.#status(batch) === "in_progress") batch.cancelledAt = this.now();
      await w.json(200, this.#object(batch, origin));
    } else if (method === "GET" && sub === "/results") await this.#results(w, batch);
    else if (method === "DELETE" && sub === undefined) {
      if (this.#status(batch) !== "ended") {
        await w.json(400, error("invalid_request_error", `Batch ${batch.id} cannot be deleted while it is processing; cancel it first.`));
      } else {
        this.#byId.delete(batch.id);
        await w.json(200, { id: batch.id, type: "message_batch_deleted" });
      }
    } else await w.json(405, error("invalid_request_error", `Method ${method} not allowed`));
    return true;
  }

  async #create(w: BatchWire, raw: Buffer, origin: string): Promise<void> {
    let body: unknown;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch {
      return w.json(400, error("invalid_request_error", "Request body is not valid JSON"));
    }
    const list = typeof body === "object" && body !== null ? (body as Json).requests : undefined;
    if (!Array.isArray(list) || list.length === 0 || list.length > 100_000)
      return w.json(400, error("invalid_request_error", "requests: must hold 1 to 100000 requests"));
    const seen = new Set<string>();
    const parsed: Omit<BatchRequest, "doneAt">[] = [];
    for (const [i, item] of list.entries()) {
      const r = (typeof item === "object" && item !== null ? item : {}) as Json;
      const params = (typeof r.params === "object" && r.params !== null ? r.params : null) as Json | null;
      if (typeof r.custom_id !== "string" || !CUSTOM_ID.test(r.custom_id))
        return w.json(400, error("invalid_request_error", `requests.${i}.custom_id: invalid`));
      if (seen.has(r.custom_id)) return w.json(400, error("invalid_request_error", `requests.${i}.custom_id: duplicate custom_id '${r.custom_id}'`));
      seen.add(r.custom_id);
      if (!params || typeof params.model !== "string") return w.json(400, error("invalid_request_error", `requests.${i}.params.model: Field required`));
      if (typeof params.max_tokens !== "number") return w.json(400, error("invalid_request_error", `requests.${i}.params.max_tokens: Field required`));
      const bytes = Buffer.byteLength(JSON.stringify(params));
      const d = parseDirectives(Buffer.from(JSON.stringify(params)));
      let text = "";
      for (let c = 0; c < d.chunks; c++) text += `word${c} `;
      parsed.push({
        customId: r.custom_id,
        messageId: `msg_${randomUUID().replaceAll("-", "").slice(0, 24)}`,
        errored: d.status !== null,
        model: params.model,
        inputTokens: d.inputTokens ?? Math.ceil(bytes / 4),
        outputTokens: d.outputTokens ?? d.chunks,
        cacheRead: d.cacheRead ?? 0,
        cacheWrite: d.cacheWrite ?? 0,
        text,
      });
    }
    const first = parseDirectives(Buffer.from(JSON.stringify((list[0] as Json).params)));
    const createdAt = this.now();
    const runMs = first.bgRunMs;
    const n = parsed.length;
    const batch: Batch = {
      id: `msgbatch_${randomUUID().replaceAll("-", "").slice(0, 24)}`,
      createdAt,
      requests: parsed.map((p, i) => ({ ...p, doneAt: createdAt + Math.ceil((runMs * (i + 1)) / n) })),
      cancelledAt: null,
    };
    this.#byId.set(batch.id, batch);
    await w.json(200, this.#object(batch, origin));
  }

  /** A request's result now: null while it is processing. */
  #result(batch: Batch, r: BatchRequest): "succeeded" | "errored" | "canceled" | "expired" | null {
    const now = this.now();
    const expiresAt = batch.createdAt + BATCH_EXPIRY_MS;
    if (r.doneAt > expiresAt && now >= expiresAt) return "expired";
    if (batch.cancelledAt !== null && r.doneAt > batch.cancelledAt) return "canceled";
    if (now < r.doneAt) return null;
    return r.errored ? "errored" : "succeeded";
  }

  #status(batch: Batch): "in_progress" | "canceling" | "ended" {
    if (batch.cancelledAt !== null) return this.now() < batch.cancelledAt + CANCEL_MS ? "canceling" : "ended";
    return batch.requests.every((r) => this.#result(batch, r) !== null) ? "ended" : "in_progress";
  }

  #object(batch: Batch, origin: string): Json {
    const counts = { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0 };
    for (const r of batch.requests) counts[this.#result(batch, r) ?? "processing"]++;
    const status = this.#status(batch);
    const lastDone = Math.max(...batch.requests.map((r) => r.doneAt));
    const endedAt =
      status !== "ended" ? null : batch.cancelledAt !== null ? batch.cancelledAt + CANCEL_MS : Math.min(lastDone, batch.createdAt + BATCH_EXPIRY_MS);
    const iso = (ms: number) => new Date(ms).toISOString();
    return {
      id: batch.id,
      type: "message_batch",
      processing_status: status,
      request_counts: counts,
      ended_at: endedAt === null ? null : iso(endedAt),
      created_at: iso(batch.createdAt),
      expires_at: iso(batch.createdAt + BATCH_EXPIRY_MS),
      archived_at: null,
      cancel_initiated_at: batch.cancelledAt === null ? null : iso(batch.cancelledAt),
      results_url: status === "ended" ? `${origin}/v1/messages/batches/${batch.id}/results` : null,
    };
  }

  async #list(w: BatchWire, query: URLSearchParams, origin: string): Promise<void> {
    const limit = Number(query.get("limit") ?? LIST_LIMIT_DEFAULT);
    if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX) return w.json(400, error("invalid_request_error", "limit: must be 1 to 1000"));
    const all = [...this.#byId.values()].reverse();
    const before = query.get("before_id");
    const after = query.get("after_id");
    let from = 0;
    let to = all.length;
    if (after !== null) from = all.findIndex((b) => b.id === after) + 1;
    if (before !== null) {
      to = Math.max(
        0,
        all.findIndex((b) => b.id === before),
      );
      from = Math.max(0, to - limit);
    }
    const page = all.slice(from, Math.min(to, from + limit));
    const data = page.map((b) => this.#object(b, origin));
    await w.json(200, {
      data,
      has_more: before !== null ? from > 0 : from + page.length < to,
      first_id: page[0]?.id ?? null,
      last_id: page.at(-1)?.id ?? null,
    });
  }

  async #results(w: BatchWire, batch: Batch): Promise<void> {
    if (this.#status(batch) !== "ended")
      return w.json(400, error("invalid_request_error", `Batch ${batch.id} is still processing; results are available once it has ended.`));
    w.head(200, { "content-type": "application/binary" });
    let pending = "";
    for (const r of batch.requests) {
      pending += `${JSON.stringify({ custom_id: r.customId, result: this.#line(batch, r) })}\n`;
      if (pending.length >= RESULTS_WRITE_BYTES) {
        if (!(await w.write(Buffer.from(pending)))) return;
        pending = "";
      }
    }
    if (pending && !(await w.write(Buffer.from(pending)))) return;
    w.end();
  }

  #line(batch: Batch, r: BatchRequest): Json {
    const type = this.#result(batch, r)!;
    if (type === "canceled" || type === "expired") return { type };
    if (type === "errored") return { type, error: { type: "error", error: { type: "invalid_request_error", message: "mock: this request was made to fail" } } };
    return {
      type,
      message: {
        id: r.messageId,
        type: "message",
        role: "assistant",
        model: r.model,
        content: [{ type: "text", text: r.text }],
        stop_reason: "end_turn",
        stop_sequence: null,
        usage: { input_tokens: r.inputTokens, cache_creation_input_tokens: r.cacheWrite, cache_read_input_tokens: r.cacheRead, output_tokens: r.outputTokens },
      },
    };
  }
}
