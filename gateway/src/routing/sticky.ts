/**
 * Sticky routing for stateful calls: a Responses API response lives at the provider account (the owner's key)
 * that created it, so a follow-up naming it (`previous_response_id`) must reach the same agent. The request
 * path reads the response id from the first RESPONSE_ID_SCAN_BYTES_MAX bytes of a successful `/v1/responses`
 * answer (the id leads both the JSON object and the first `response.created` event) and records id → agent
 * here: in memory (bounded, for this gateway's next request at once) and in `response_routes` (for every
 * gateway, and after a restart). Ids only, never content.
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

export class StickyRoutes {
  readonly #memory = new Map<string, string>();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {}

  /** The agent that created the response, or null when the hub never saw it. */
  async agentOf(responseId: string): Promise<string | null> {
    const known = this.#memory.get(responseId);
    if (known) return known;
    const row = await this.db.responseRoute.findUnique({ where: { responseId }, select: { agentId: true } });
    return row?.agentId ?? null;
  }

  /** A response was created by `agentId`. */
  record(responseId: string, agentId: string): void {
    this.#memory.set(responseId, agentId);
    if (this.#memory.size > STICKY_MEMORY_ENTRIES_MAX) {
      const oldest = this.#memory.keys().next().value;
      if (oldest !== undefined) this.#memory.delete(oldest);
    }
    void this.db.responseRoute
      .upsert({ where: { responseId }, create: { responseId, agentId }, update: {} })
      .catch((error: unknown) => this.log.warn("routing.sticky_record_failed", { agentId, error }));
  }
}
