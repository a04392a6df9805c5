/**
 * OpenAI's Batch API through the hub (docs/billing.md "Batches"; docs/ARCHITECTURE.md "Batches"): the create
 * call's body read and checked, the deferred settlement kind that polls a batch through the agent that keeps it
 * and registers its output and error files, and the user's batch list answered from the hub's own rows (never
 * the provider's list: it would show the owner's other batches).
 */
import type pg from "pg";
import { JsonBodyScanner } from "@wellspring/protocol";
import type { EndCause } from "../billing/usage.ts";
import { jsonObject, parseStatusObject, type DeferredKindHandler } from "./deferred_kinds.ts";

/** Largest batch create body read, bytes (its fields are ids and up to 16 metadata pairs of ≤ 64 + 512 characters). */
export const BATCH_CREATE_BODY_BYTES_MAX = 64 * 1024;
/** Largest batch object read, bytes: by a poll, and from the create call's answer. */
export const BATCH_OBJECT_BYTES_MAX = 256 * 1024;
/**
 * A batch row not settled this long after its create call is settled by the "expired" rule, ms: the 24 h
 * completion window, then up to a day for the provider's finalizing, expiry or cancel to show (OpenAI's batches
 * end `expired` soon after the window), inside the agent's 48 h record of the stream.
 */
export const BATCH_MAX_AGE_MS = 47 * 3_600_000;
/** A batch list's page when the call names no `limit`, and its largest (OpenAI's). */
export const BATCH_LIST_LIMIT_DEFAULT = 20;
export const BATCH_LIST_LIMIT_MAX = 100;

/** The Batch API's statuses after which a batch changes no more. */
export const BATCH_TERMINAL_STATUSES: ReadonlySet<string> = new Set(["completed", "failed", "expired", "cancelled"]);

/** A batch's fields the hub keeps (ids, statuses, times, counts, usage, the user's metadata): none is content. */
const SNAPSHOT_FIELDS = [
  "id",
  "object",
  "endpoint",
  "model",
  "errors",
  "input_file_id",
  "completion_window",
  "status",
  "output_file_id",
  "error_file_id",
  "created_at",
  "in_progress_at",
  "expires_at",
  "finalizing_at",
  "completed_at",
  "failed_at",
  "expired_at",
  "cancelling_at",
  "cancelled_at",
  "request_counts",
  "usage",
  "metadata",
] as const;

export function batchSnapshot(batch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of SNAPSHOT_FIELDS) if (k in batch) out[k] = batch[k];
  return out;
}

export interface BatchCreate {
  inputFileId: string;
  endpoint: string;
}

/** The create call's body checked as OpenAI checks it (the provider checks the rest), or why not. */
export function parseBatchCreate(body: Uint8Array): BatchCreate | { problem: string; param: string | null } {
  // Top-level keys repeated are refused (a provider's parser keeps the last: the hub must read what it runs).
  const scanner = new JsonBodyScanner();
  scanner.push(body);
  scanner.end();
  if (scanner.problem !== null) return { problem: `We could not read the body of your request: ${scanner.problem}.`, param: null };
  const o = jsonObject(body);
  if (!o) return { problem: "The body must be a JSON object.", param: null };
  if (typeof o.input_file_id !== "string" || !/^file-[A-Za-z0-9_-]{1,200}$/.test(o.input_file_id)) {
    return { problem: "Missing required parameter: 'input_file_id'.", param: "input_file_id" };
  }
  if (typeof o.endpoint !== "string") return { problem: "Missing required parameter: 'endpoint'.", param: "endpoint" };
  if (o.completion_window !== "24h") return { problem: "Invalid value for 'completion_window': only '24h' is supported.", param: "completion_window" };
  return { inputFileId: o.input_file_id, endpoint: o.endpoint };
}

function batchEndCause(status: string): EndCause {
  if (status === "cancelled") return "client_cancelled";
  if (status === "completed") return "completed";
  return "upstream_error";
}

/**
 * An OpenAI batch: `GET /v1/batches/{id}` until a terminal status; its `usage` (summed over the requests it ran)
 * is in the object. A terminal batch without `usage` is charged nothing (the rule background responses use). At
 * settlement its output and error files are routed to the agent that keeps them, for the user who made it.
 */
export const openaiBatchKind: DeferredKindHandler = {
  api: "openai",
  pollBytesMax: BATCH_OBJECT_BYTES_MAX,
  maxAgeMs: BATCH_MAX_AGE_MS,
  poll: (row) => ({ path: `/v1/batches/${row.objectId}` }),
  parse: (status, body) => parseStatusObject(status, body, BATCH_TERMINAL_STATUSES),
  endCause: batchEndCause,
  snapshot: batchSnapshot,
  async onSettled(c: pg.PoolClient, row, terminal) {
    if (!terminal) return;
    const ids = [terminal.object.output_file_id, terminal.object.error_file_id].filter(
      (id): id is string => typeof id === "string" && /^file-[A-Za-z0-9_-]{1,200}$/.test(id),
    );
    for (const id of ids) {
      await c.query(
        `INSERT INTO file_routes (file_id, agent_id, user_id, model, purpose, bytes, created_at) VALUES ($1, $2, $3, $4, 'batch_output', 0, now())
         ON CONFLICT (file_id) DO NOTHING`,
        [id, row.agentId, row.userId, row.model],
      );
    }
  },
};

export interface BatchListQuery {
  limit: number;
  after: string | null;
}

/** The list query a user's `GET /v1/batches` names (`limit` 1–100, default 20; `after` a batch id), or why not. */
export function batchListQuery(params: URLSearchParams): BatchListQuery | { problem: string; param: string } {
  const limitText = params.get("limit");
  const limit = limitText === null ? BATCH_LIST_LIMIT_DEFAULT : Number(limitText);
  if (!/^[0-9]{1,4}$/.test(limitText ?? "1") || limit < 1 || limit > BATCH_LIST_LIMIT_MAX) {
    return { problem: `limit must be a whole number from 1 to ${BATCH_LIST_LIMIT_MAX}.`, param: "limit" };
  }
  const after = params.get("after");
  if (after !== null && !/^batch_[A-Za-z0-9_-]{1,200}$/.test(after)) return { problem: "after must be a batch id.", param: "after" };
  return { limit, after };
}

/** One page of the user's batches, newest first, as last polled (the hub's rows: only this user's batches). */
export async function listBatches(
  pool: pg.Pool,
  userId: string,
  q: BatchListQuery,
): Promise<{ object: "list"; data: Record<string, unknown>[]; first_id: string | null; last_id: string | null; has_more: boolean }> {
  const r = await pool.query<{ object_id: string; snapshot: Record<string, unknown> | null }>(
    `SELECT d.object_id, d.snapshot FROM deferred_settlements d
     WHERE d.user_id = $1 AND d.kind = 'openai_batch'
       AND ($2::text IS NULL OR (d.created_at, d.object_id) < (SELECT a.created_at, a.object_id FROM deferred_settlements a
         WHERE a.kind = 'openai_batch' AND a.object_id = $2 AND a.user_id = $1))
     ORDER BY d.created_at DESC, d.object_id DESC LIMIT $3`,
    [userId, q.after, q.limit + 1],
  );
  const rows = r.rows.slice(0, q.limit);
  const data = rows.map((row) => ({ id: row.object_id, object: "batch", ...(row.snapshot ?? {}) }));
  return { object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: r.rows.length > q.limit };
}
