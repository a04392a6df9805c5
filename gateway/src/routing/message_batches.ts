/**
 * Message Batches routing (Anthropic): a batch lives at the provider account — the owner's key — of the agent that
 * created it, so every later call on it (retrieve, cancel, results, delete) must reach that agent. The request path
 * records batch → agent, user, model once the provider answered the create call (`message_batch_routes`, before
 * the client hears of the batch), and keeps the batch object as it last passed through the hub; only that user's
 * keys reach the batch: another user's, an unknown and a deleted id get the same 404.
 *
 * Never stored: a request or a result (user content). The hub answers the user's batch list from these rows
 * (`list`), so no provider listing — which would show the owner's other batches — is ever asked for.
 *
 * A batch object's `results_url` names the provider's host; the hub hands it out as its own path
 * (`/v1/messages/batches/{id}/results`, relative to the API's base URL, as Anthropic's SDK resolves it), so a
 * client fetches the results through the hub — never from the provider with the hub key.
 */
import type { Db } from "@wellspring/db/core";
import type { Logger } from "../log.ts";

/** A Message Batch id as a path segment's content (Anthropic's `msgbatch_…`). */
export const MESSAGE_BATCH_ID_PATTERN = /^msgbatch_[A-Za-z0-9_-]{1,200}$/;
/** Largest page of a batch list, and the page when the call names no `limit` (Anthropic's own). */
export const MESSAGE_BATCH_LIST_LIMIT_MAX = 1_000;
export const MESSAGE_BATCH_LIST_LIMIT_DEFAULT = 20;
/** Largest batch object read from a provider answer, bytes (one is well under 1 KB; a longer answer is not one). */
export const MESSAGE_BATCH_OBJECT_BYTES_MAX = 64 * 1024;

/** Where a batch lives: the agent that created it, for which user, under which model's offer, by which request. */
export interface MessageBatchRoute {
  agentId: string;
  userId: string;
  model: string;
  requestId: string;
}

export interface MessageBatchListQuery {
  limit: number;
  /** A batch id: the page ends just before it (newer batches). */
  beforeId: string | null;
  /** A batch id: the page starts just after it (older batches). */
  afterId: string | null;
}

/** The list query of a `GET /v1/messages/batches`, or the problem with it (Anthropic's: `limit` 1–1,000, `before_id`, `after_id`). */
export function messageBatchListQuery(params: URLSearchParams): MessageBatchListQuery | { problem: string } {
  const limitText = params.get("limit");
  const limit = limitText === null ? MESSAGE_BATCH_LIST_LIMIT_DEFAULT : Number(limitText);
  if (!/^[0-9]{1,5}$/.test(limitText ?? "1") || limit < 1 || limit > MESSAGE_BATCH_LIST_LIMIT_MAX) {
    return { problem: `limit: Input should be a whole number from 1 to ${MESSAGE_BATCH_LIST_LIMIT_MAX}` };
  }
  const beforeId = params.get("before_id");
  const afterId = params.get("after_id");
  for (const [name, id] of [
    ["before_id", beforeId],
    ["after_id", afterId],
  ] as const) {
    if (id !== null && !MESSAGE_BATCH_ID_PATTERN.test(id)) return { problem: `${name}: not a message batch id` };
  }
  if (beforeId !== null && afterId !== null) return { problem: "before_id and after_id cannot be used together" };
  return { limit, beforeId, afterId };
}

/** A batch object as the hub keeps and hands it out (Anthropic's `message_batch`; times RFC 3339, UTC). */
export type HubBatchObject = {
  id: string;
  type: "message_batch";
  processing_status: string;
  request_counts: { processing: number; succeeded: number; errored: number; canceled: number; expired: number };
  ended_at: string | null;
  created_at: string | null;
  expires_at: string | null;
  archived_at: string | null;
  cancel_initiated_at: string | null;
  results_url: string | null;
};

/** A batch object as the hub hands it out: only the batch's own fields, its `results_url` the hub's path. */
export function hubBatchObject(o: Record<string, unknown>): HubBatchObject | null {
  if (typeof o.id !== "string" || !MESSAGE_BATCH_ID_PATTERN.test(o.id) || o.type !== "message_batch") return null;
  const counts = typeof o.request_counts === "object" && o.request_counts !== null ? (o.request_counts as Record<string, unknown>) : {};
  const count = (k: string): number => {
    const v = counts[k];
    return typeof v === "number" && Number.isSafeInteger(v) ? v : 0;
  };
  const time = (k: string): string | null => {
    const v = o[k];
    return typeof v === "string" && v.length <= 64 ? v : null;
  };
  return {
    id: o.id,
    type: "message_batch",
    processing_status: typeof o.processing_status === "string" ? o.processing_status.slice(0, 32) : "in_progress",
    request_counts: {
      processing: count("processing"),
      succeeded: count("succeeded"),
      errored: count("errored"),
      canceled: count("canceled"),
      expired: count("expired"),
    },
    ended_at: time("ended_at"),
    created_at: time("created_at"),
    expires_at: time("expires_at"),
    archived_at: time("archived_at"),
    cancel_initiated_at: time("cancel_initiated_at"),
    results_url: o.results_url === null || o.results_url === undefined ? null : `/v1/messages/batches/${o.id}/results`,
  };
}

/** Reads a provider answer's batch object (JSON, at most MESSAGE_BATCH_OBJECT_BYTES_MAX): the hub's form of it, or null. */
export function parseBatchObject(body: Uint8Array): HubBatchObject | null {
  if (body.length > MESSAGE_BATCH_OBJECT_BYTES_MAX) return null;
  try {
    const v: unknown = JSON.parse(new TextDecoder().decode(body));
    return typeof v === "object" && v !== null && !Array.isArray(v) ? hubBatchObject(v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export class MessageBatchRoutes {
  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {}

  /** The route of a batch the user's keys created, or null (never seen, another user's, or deleted: the same null). */
  async routeOf(batchId: string, userId: string): Promise<MessageBatchRoute | null> {
    const row = await this.db.messageBatchRoute.findUnique({ where: { batchId }, select: { agentId: true, userId: true, model: true, requestId: true } });
    return row && row.userId === userId ? row : null;
  }

  /** A batch was created: it lives at `route.agentId`. Resolves once the row is written (a failure is logged and rethrown). */
  async record(batchId: string, route: MessageBatchRoute, object: HubBatchObject): Promise<void> {
    const created = object.created_at !== null ? new Date(object.created_at) : new Date();
    const createdAt = Number.isNaN(created.getTime()) ? new Date() : created;
    try {
      await this.db.messageBatchRoute.upsert({
        where: { batchId },
        create: { batchId, ...route, object, createdAt },
        update: {},
      });
    } catch (error) {
      this.log.warn("routing.message_batch_record_failed", { agentId: route.agentId, error });
      throw error;
    }
  }

  /** The batch object passed through the hub again (retrieve, cancel, a poll): the list shows it so. */
  async seen(object: HubBatchObject): Promise<void> {
    await this.db.messageBatchRoute.updateMany({ where: { batchId: object.id }, data: { object, updatedAt: new Date() } }).then(
      () => {},
      (error: unknown) => this.log.warn("routing.message_batch_update_failed", { error }),
    );
  }

  /** The batch was deleted at its provider: no later call is routed for it, and it leaves the list. */
  async forget(batchId: string): Promise<void> {
    await this.db.messageBatchRoute.deleteMany({ where: { batchId } }).then(
      () => {},
      (error: unknown) => this.log.warn("routing.message_batch_forget_failed", { error }),
    );
  }

  /** One page of the user's batches, newest first (Anthropic's list shape and cursors). */
  async list(
    userId: string,
    q: MessageBatchListQuery,
  ): Promise<{ data: Record<string, unknown>[]; has_more: boolean; first_id: string | null; last_id: string | null }> {
    const cursorId = q.beforeId ?? q.afterId;
    const cursor =
      cursorId === null ? null : await this.db.messageBatchRoute.findUnique({ where: { batchId: cursorId }, select: { userId: true, createdAt: true } });
    if (cursorId !== null && (cursor === null || cursor.userId !== userId)) return { data: [], has_more: false, first_id: null, last_id: null };
    const newer = q.beforeId !== null;
    const beyond =
      cursor === null
        ? {}
        : {
            OR: [
              { createdAt: newer ? { gt: cursor.createdAt } : { lt: cursor.createdAt } },
              { createdAt: cursor.createdAt, batchId: newer ? { gt: cursorId! } : { lt: cursorId! } },
            ],
          };
    const order = newer ? ("asc" as const) : ("desc" as const);
    const rows = await this.db.messageBatchRoute.findMany({
      where: { userId, ...beyond },
      orderBy: [{ createdAt: order }, { batchId: order }],
      take: q.limit + 1,
      select: { batchId: true, object: true },
    });
    const hasMore = rows.length > q.limit;
    const page = rows.slice(0, q.limit);
    if (newer) page.reverse();
    const data = page.map((r) => r.object as Record<string, unknown>);
    return { data, has_more: hasMore, first_id: page[0]?.batchId ?? null, last_id: page.at(-1)?.batchId ?? null };
  }
}
