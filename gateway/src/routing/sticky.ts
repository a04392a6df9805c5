/**
 * Sticky routing for stateful calls: a Responses API response lives at the provider account (the owner's key)
 * that created it, so a follow-up naming it (`previous_response_id`) must reach the same agent. The request
 * path reads the response id from the first RESPONSE_ID_SCAN_BYTES_MAX bytes of a successful `/v1/responses`
 * answer (the id leads both the JSON object and the first `response.created` event) and records id → agent
 * here: in memory (bounded, for this gateway's next request at once) and in `response_routes` (for every
 * gateway, and after a restart), with the user whose key made it: only that user's keys reach it, by
 * `previous_response_id` or by the stored-response calls (retrieve, delete, cancel, input items). Ids only,
 * never content. Routes older than RESPONSE_ROUTE_TTL_MS are pruned.
 */
import type { Db } from "@wellspring/db/core";
import type { Logger } from "../log.ts";

/** Response bytes searched for the response id, bytes. */
export const RESPONSE_ID_SCAN_BYTES_MAX = 4 * 1024;
/** Response ids this gateway keeps in memory, most recent first. */
export const STICKY_MEMORY_ENTRIES_MAX = 100_000;

const RESPONSE_ID = /"id"\s*:\s*"(resp_[A-Za-z0-9_-]{1,200})"/;

/** Reads a response id from the head of a `/v1/responses` answer as its bytes pass (never changes or keeps them). */
export class ResponseIdTap {
  #text = "";
  #done = false;
  readonly #decoder = new TextDecoder();

  /** The id once found in the bytes seen so far, else null (and nothing more is searched past the bound). */
  push(chunk: Uint8Array): string | null {
    if (this.#done) return null;
    const room = RESPONSE_ID_SCAN_BYTES_MAX - this.#text.length;
    this.#text += this.#decoder.decode(chunk.subarray(0, Math.max(0, room)), { stream: true });
    const m = RESPONSE_ID.exec(this.#text);
    if (m || this.#text.length >= RESPONSE_ID_SCAN_BYTES_MAX) {
      this.#done = true;
      this.#text = "";
    }
    return m ? m[1]! : null;
  }
}

/** How long a response's route is kept, ms: OpenAI keeps a stored response 30 days by default. */
export const RESPONSE_ROUTE_TTL_MS = 30 * 24 * 60 * 60 * 1000;
/** How often each gateway deletes routes older than RESPONSE_ROUTE_TTL_MS, ms. */
export const RESPONSE_ROUTE_PRUNE_INTERVAL_MS = 60 * 60 * 1000;

/** Where a stored response lives: the agent that made it (its provider key), for which user, under which model. */
export interface ResponseRoute {
  agentId: string;
  userId: string | null;
  model: string | null;
  /** When it was recorded, epoch ms. */
  at: number;
}

export class StickyRoutes {
  readonly #memory = new Map<string, ResponseRoute>();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The route of a response the user's keys made, or null when the hub never saw it, it belongs to another
   * user (or to no known user), or its route expired. The same null in every case: no one learns that another
   * user's response exists.
   */
  async routeOf(responseId: string, userId: string): Promise<ResponseRoute | null> {
    let route: ResponseRoute | null | undefined = this.#memory.get(responseId);
    if (!route) {
      const row = await this.db.responseRoute.findUnique({ where: { responseId }, select: { agentId: true, userId: true, model: true, createdAt: true } });
      route = row ? { agentId: row.agentId, userId: row.userId, model: row.model, at: row.createdAt.getTime() } : null;
    }
    if (!route || route.userId !== userId || this.now() - route.at > RESPONSE_ROUTE_TTL_MS) return null;
    return route;
  }

  /** A response was created by `agentId` for `userId`'s request under `model`; resolves once the row is written (or its failure logged). */
  async record(responseId: string, route: { agentId: string; userId: string; model: string }): Promise<void> {
    const at = this.now();
    this.#memory.set(responseId, { ...route, at });
    if (this.#memory.size > STICKY_MEMORY_ENTRIES_MAX) {
      const oldest = this.#memory.keys().next().value;
      if (oldest !== undefined) this.#memory.delete(oldest);
    }
    await this.db.responseRoute.upsert({ where: { responseId }, create: { responseId, ...route, createdAt: new Date(at) }, update: {} }).then(
      () => {},
      (error: unknown) => this.log.warn("routing.sticky_record_failed", { agentId: route.agentId, error }),
    );
  }

  /** The agent no longer exists or was revoked: what its provider account holds cannot be reached through the hub again. */
  async agentRetired(agentId: string): Promise<boolean> {
    const agent = await this.db.agent.findUnique({ where: { id: agentId }, select: { status: true } });
    return agent === null || agent.status === "revoked";
  }

  /** A response was deleted at its provider: no later call is routed for it (here at once; elsewhere once the row is gone, which this resolves on). */
  async forget(responseId: string): Promise<void> {
    this.#memory.delete(responseId);
    await this.db.responseRoute.deleteMany({ where: { responseId } }).then(
      () => {},
      (error: unknown) => this.log.warn("routing.sticky_forget_failed", { error }),
    );
  }

  /** Deletes routes older than RESPONSE_ROUTE_TTL_MS, here and in `response_routes`; returns the rows deleted. */
  async prune(): Promise<number> {
    const cutoff = this.now() - RESPONSE_ROUTE_TTL_MS;
    // The map is in insertion order, oldest first.
    for (const [id, route] of this.#memory) {
      if (route.at >= cutoff) break;
      this.#memory.delete(id);
    }
    const { count } = await this.db.responseRoute.deleteMany({ where: { createdAt: { lt: new Date(cutoff) } } });
    return count;
  }

  /** Prunes every RESPONSE_ROUTE_PRUNE_INTERVAL_MS until stopped (each gateway does; the deletes are idempotent). */
  startPruning(intervalMs = RESPONSE_ROUTE_PRUNE_INTERVAL_MS): () => void {
    const run = () =>
      void this.prune().then(
        (n) => n > 0 && this.log.info("routing.sticky_pruned", { routes: n }),
        (error: unknown) => this.log.warn("routing.sticky_prune_failed", { error }),
      );
    const timer = setInterval(run, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }
}
