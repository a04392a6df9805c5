/**
 * Files routing: a file uploaded through the hub (OpenAI Files API) lives at the provider account — the owner's
 * key — of the agent that uploaded it, so every later call on it (retrieve, content, delete) and every request
 * that names it (`file_id` in a chat `file` part or a Responses `input_file` part) must reach that agent. The
 * request path records file → agent, user, model, purpose, bytes and the provider's `created_at` once the
 * provider answered the upload (in memory for this gateway at once, and in `file_routes` for every gateway);
 * only that user's keys reach the file: another user's, an unknown and a deleted id get the same 404.
 *
 * Never stored: the file's content and its filename (user content). The hub answers the user's file list from
 * these rows (`list`), so no provider listing — which would show the owner's other files — is ever asked for.
 *
 * `routeOf(fileId, userId)` is the one lookup other stateful calls use (a batch's `input_file_id` too).
 */
import type { Db } from "@wellspring/db/core";
import type { Logger } from "../log.ts";

/** File routes this gateway keeps in memory, most recent first. */
export const FILE_MEMORY_ENTRIES_MAX = 100_000;
/** Largest page of a file list (OpenAI's own maximum `limit`). */
export const FILE_LIST_LIMIT_MAX = 10_000;
/** A file list's page when the call names no `limit` (OpenAI's default). */
export const FILE_LIST_LIMIT_DEFAULT = 10_000;

/** A batch input file as the hub read it while it uploaded (`billing/batch_input.ts` computes it). */
export type BatchInputSummary =
  | { batchable: true; model: string; endpoint: string; lines: number; worstInputTokens: number; worstOutputTokens: number }
  | { batchable: false; problem: string };

/** Where a file lives: the agent that uploaded it (its provider key), for which user, under which model's offer. */
export interface FileRoute {
  agentId: string;
  userId: string;
  model: string;
  purpose: string;
  bytes: number;
  /** The provider's `created_at`, epoch seconds. */
  createdAt: number;
  /** A batch input file as the hub read it (purpose `batch`); null for other files. */
  batch?: BatchInputSummary | null;
}

/** A file object as the hub lists it (OpenAI's shape; `filename` is not kept by the hub, so it is ""). */
export interface ListedFile {
  id: string;
  object: "file";
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: "processed";
  expires_at: null;
  status_details: null;
}

export interface FileListQuery {
  purpose: string | null;
  limit: number;
  order: "asc" | "desc";
  /** A file id: the page starts after it (in the list's order). */
  after: string | null;
}

/**
 * The list query a user's `GET /v1/files` names, or an error message for a value outside OpenAI's: `limit`
 * 1–10,000, `order` asc|desc (default desc), `after` a file id, `purpose` one plain token.
 */
export function fileListQuery(params: URLSearchParams): FileListQuery | { problem: string; param: string } {
  const limitText = params.get("limit");
  const limit = limitText === null ? FILE_LIST_LIMIT_DEFAULT : Number(limitText);
  if (!/^[0-9]{1,6}$/.test(limitText ?? "1") || limit < 1 || limit > FILE_LIST_LIMIT_MAX) {
    return { problem: `limit must be a whole number from 1 to ${FILE_LIST_LIMIT_MAX}.`, param: "limit" };
  }
  const order = params.get("order") ?? "desc";
  if (order !== "asc" && order !== "desc") return { problem: "order must be 'asc' or 'desc'.", param: "order" };
  const after = params.get("after");
  if (after !== null && !/^file-[A-Za-z0-9_-]{1,200}$/.test(after)) return { problem: "after must be a file id.", param: "after" };
  const purpose = params.get("purpose");
  if (purpose !== null && !/^[a-z0-9_-]{1,64}$/.test(purpose)) return { problem: "purpose is not a file purpose.", param: "purpose" };
  return { purpose, limit, order, after };
}

/** Tries of a deleted file's route delete before it is logged as left behind. */
export const FILE_FORGET_ATTEMPTS = 5;
/** The first wait between those tries, ms (doubling: 0.5, 1, 2, 4 s). */
export const FILE_FORGET_RETRY_MS = 500;

export class FileRoutes {
  readonly #memory = new Map<string, FileRoute>();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {}

  /**
   * The route of a file the user's keys uploaded, or null when the hub never saw it, it is another user's, or
   * it was deleted. The same null in every case: no one learns that another user's file exists.
   */
  async routeOf(fileId: string, userId: string): Promise<FileRoute | null> {
    let route: FileRoute | null | undefined = this.#memory.get(fileId);
    if (!route) {
      const row = await this.db.fileRoute.findUnique({ where: { fileId } });
      const batch = row ? batchOfRow(row) : null;
      route = row
        ? {
            agentId: row.agentId,
            userId: row.userId,
            model: row.model,
            purpose: row.purpose,
            bytes: Number(row.bytes),
            createdAt: Math.floor(row.createdAt.getTime() / 1000),
            ...(batch ? { batch } : {}),
          }
        : null;
    }
    return route && route.userId === userId ? route : null;
  }

  /** An upload succeeded: `fileId` lives at `route.agentId`. Resolves once the row is written (a failure is logged and rethrown). */
  async record(fileId: string, route: FileRoute): Promise<void> {
    this.#memory.set(fileId, route);
    if (this.#memory.size > FILE_MEMORY_ENTRIES_MAX) {
      const oldest = this.#memory.keys().next().value;
      if (oldest !== undefined) this.#memory.delete(oldest);
    }
    const data = {
      agentId: route.agentId,
      userId: route.userId,
      model: route.model,
      purpose: route.purpose,
      bytes: BigInt(route.bytes),
      createdAt: new Date(route.createdAt * 1000),
      ...batchColumns(route.batch ?? null),
    };
    try {
      await this.db.fileRoute.upsert({ where: { fileId }, create: { fileId, ...data }, update: {} });
    } catch (error) {
      this.log.warn("routing.file_record_failed", { agentId: route.agentId, error });
      throw error;
    }
  }

  /**
   * A file was deleted at its provider: no later call is routed for it, and it leaves the user's list. The row's
   * delete is retried (FILE_FORGET_ATTEMPTS, backoff from FILE_FORGET_RETRY_MS) when the database refuses it — a
   * busy pool — since a route left behind would list a deleted file.
   */
  async forget(fileId: string, retryMs = FILE_FORGET_RETRY_MS): Promise<void> {
    this.#memory.delete(fileId);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.db.fileRoute.deleteMany({ where: { fileId } });
        return;
      } catch (error) {
        if (attempt >= FILE_FORGET_ATTEMPTS) {
          this.log.warn("routing.file_forget_failed", { attempts: attempt, error });
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, retryMs * 2 ** (attempt - 1)));
      }
    }
  }

  /** One page of the user's files, newest first unless `order` is asc; `after` is the cursor of the previous page. */
  async list(
    userId: string,
    q: FileListQuery,
  ): Promise<{ object: "list"; data: ListedFile[]; first_id: string | null; last_id: string | null; has_more: boolean }> {
    const rows = await this.db.fileRoute.findMany({
      where: { userId, ...(q.purpose !== null ? { purpose: q.purpose } : {}) },
      orderBy: [{ createdAt: q.order }, { fileId: q.order }],
      select: { fileId: true, purpose: true, bytes: true, createdAt: true },
    });
    let from = 0;
    if (q.after !== null) {
      const at = rows.findIndex((r) => r.fileId === q.after);
      from = at < 0 ? rows.length : at + 1;
    }
    const page = rows.slice(from, from + q.limit);
    const data: ListedFile[] = page.map((r) => ({
      id: r.fileId,
      object: "file",
      bytes: Number(r.bytes),
      created_at: Math.floor(r.createdAt.getTime() / 1000),
      filename: "",
      purpose: r.purpose,
      status: "processed",
      expires_at: null,
      status_details: null,
    }));
    return { object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: from + page.length < rows.length };
  }
}

/** A batch summary as `file_routes` columns (all null for a file that is not a batch input). */
function batchColumns(b: BatchInputSummary | null) {
  return {
    batchModel: b?.batchable ? b.model : null,
    batchEndpoint: b?.batchable ? b.endpoint : null,
    batchLines: b?.batchable ? b.lines : null,
    batchInputTokensMax: b?.batchable ? BigInt(b.worstInputTokens) : null,
    batchOutputTokensMax: b?.batchable ? BigInt(b.worstOutputTokens) : null,
    batchProblem: b && !b.batchable ? b.problem.slice(0, 500) : null,
  };
}

function batchOfRow(row: ReturnType<typeof batchColumns>): BatchInputSummary | null {
  if (row.batchProblem !== null) return { batchable: false, problem: row.batchProblem };
  if (row.batchModel === null || row.batchEndpoint === null) return null;
  return {
    batchable: true,
    model: row.batchModel,
    endpoint: row.batchEndpoint,
    lines: row.batchLines ?? 0,
    worstInputTokens: Number(row.batchInputTokensMax ?? 0n),
    worstOutputTokens: Number(row.batchOutputTokensMax ?? 0n),
  };
}

/** Response bytes of an upload read for the file object (id, bytes, purpose, created_at), bytes. */
export const FILE_OBJECT_SCAN_BYTES_MAX = 16 * 1024;

/** Collects the head of an answer (a small JSON object: a file, a batch) as its bytes pass, bounded; never changes them. */
export class ObjectTap {
  readonly #chunks: Uint8Array[] = [];
  #bytes = 0;

  /** `limitBytes`: the longest answer read (a longer one is not an object this tap returns). */
  constructor(private readonly limitBytes = FILE_OBJECT_SCAN_BYTES_MAX) {}

  push(chunk: Uint8Array): void {
    if (this.#bytes >= this.limitBytes) return;
    const part = chunk.subarray(0, this.limitBytes - this.#bytes);
    this.#chunks.push(part.slice());
    this.#bytes += part.length;
  }

  /** The answer as a JSON object, or null (not JSON, not an object, longer than read). */
  object(): Record<string, unknown> | null {
    if (this.#bytes >= this.limitBytes) return null;
    try {
      const o: unknown = JSON.parse(new TextDecoder().decode(Buffer.concat(this.#chunks)));
      return typeof o === "object" && o !== null && !Array.isArray(o) ? (o as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  }
}

/** Collects the head of a successful upload's answer (the file object) as its bytes pass, bounded; never changes them. */
export class FileObjectTap extends ObjectTap {
  /** The file object's routing fields, or null when the answer is not one (not JSON, too long, an id of another form). */
  fileObject(): { id: string; bytes: number; purpose: string; createdAt: number } | null {
    const o = this.object();
    if (!o || typeof o.id !== "string" || !/^file-[A-Za-z0-9_-]{1,200}$/.test(o.id)) return null;
    const bytes = typeof o.bytes === "number" && Number.isSafeInteger(o.bytes) && o.bytes >= 0 ? o.bytes : 0;
    const createdAt = typeof o.created_at === "number" && Number.isSafeInteger(o.created_at) ? o.created_at : Math.floor(Date.now() / 1000);
    const purpose = typeof o.purpose === "string" ? o.purpose.slice(0, 64) : "";
    return { id: o.id, bytes, purpose, createdAt };
  }
}
