/**
 * The kinds of deferred settlement (`deferred_settlements.kind`) and what the poller (`deferred.ts`) asks of each:
 * which provider call reads the object's state, how its answer reads (running, terminal with usage, gone), where
 * the usage is when the terminal object does not carry it (more calls through the same agent), and what else a
 * settlement writes in its transaction. The poller owns the claiming, the backoff, the money and the receipts; a
 * kind owns only its provider's wire format. A new kind is one `DeferredKindHandler` listed in `deferred_registry.ts`.
 */
import type pg from "pg";
import type { ApiFamily } from "@wellspring/protocol";
import { endCauseOf, TERMINAL_STATUSES, type DeferredKind } from "../billing/deferred.ts";
import type { EndCause, Usage } from "../billing/usage.ts";
import { usageFromObject } from "../billing/usage_tap.ts";

export type { DeferredKind } from "../billing/deferred.ts";

/** A row as a kind sees it (ids and counts only). */
export interface DeferredRowView {
  requestId: string;
  kind: DeferredKind;
  userId: string;
  agentId: string;
  model: string;
  /** The provider's id of the polled object (a response id, a batch id). */
  objectId: string;
  worst: { inputTokens: number; outputTokens: number };
  createdAt: Date;
}

/** One provider call through the row's agent (always a GET with no body). */
export interface DeferredCall {
  path: string;
  /** Extra request headers (the agent adds the provider key); e.g. an API version header. */
  headers?: [string, string][];
}

/** A poll's answer as a kind reads it. */
export type DeferredPoll =
  /** The object changes no more: `usage` as it reports it (null: none reported; the `usage` step may find it). */
  | { kind: "terminal"; status: string; usage: Usage | null; object: Record<string, unknown> }
  | { kind: "running"; status: string; object: Record<string, unknown> }
  /** The provider knows the object no more (404). */
  | { kind: "gone" }
  | { kind: "no_answer"; why: string };

/** Calls through the agent of the row being polled (on the gateway holding its connection). */
export interface DeferredAgent {
  /** One call, its answer read whole up to `maxBytes` (beyond: `truncated`, the rest discarded). */
  get(call: DeferredCall, maxBytes: number): Promise<{ status: number; body: Uint8Array; truncated: boolean } | { error: string }>;
  /**
   * One call, its answer handed to `onData` chunk by chunk as it arrives (each chunk is credited back to the
   * stream once `onData` returns, so a reader that keeps up holds one window at most).
   */
  stream(call: DeferredCall, onData: (chunk: Uint8Array) => void): Promise<{ status: number } | { error: string }>;
}

/** The usage step's answer: the usage found (null: none), or no answer (the row is polled again later). */
export type DeferredUsage = { usage: Usage | null } | { noAnswer: string };

export interface DeferredKindHandler {
  readonly api: ApiFamily;
  /** Largest poll answer read, bytes (a longer one is read as no answer). */
  readonly pollBytesMax: number;
  /** A row of this kind not settled this long after its create call is settled by the "expired" rule, ms (default: the poller's `maxAgeMs`). */
  readonly maxAgeMs?: number;
  /** The call that reads the object's state. */
  poll(row: DeferredRowView): DeferredCall;
  /** The poll's answer (HTTP status, body) read as a state. */
  parse(status: number, body: Uint8Array): DeferredPoll;
  /** How a terminal status ends the request, for its record and receipt. */
  endCause(status: string): EndCause;
  /** What of a polled object the hub keeps (`deferred_settlements.snapshot`): only content-free fields; null keeps nothing. */
  snapshot?(object: Record<string, unknown>): Record<string, unknown> | null;
  /** When the terminal object does not carry the usage: more calls through the agent to find it (e.g. a results file). */
  usage?(row: DeferredRowView, terminal: Extract<DeferredPoll, { kind: "terminal" }>, agent: DeferredAgent): Promise<DeferredUsage>;
  /** Writes in the settlement's transaction, once, when this call settled the row (`terminal` null: settled by a rule). */
  onSettled?(c: pg.PoolClient, row: DeferredRowView, terminal: Extract<DeferredPoll, { kind: "terminal" }> | null): Promise<void>;
}

/** Largest retrieved response object read, bytes (its usage sits at the end; a longer one is read as no answer). */
export const DEFERRED_RESPONSE_BYTES_MAX = 8 * 1024 * 1024;

/** Parses a JSON object answer; null when it is not one. */
export function jsonObject(body: Uint8Array): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"));
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * Reads a polled object with a `status` and, once terminal, a `usage` (OpenAI's responses and batches): 404 is
 * gone, another status or a body that is not a JSON object no answer.
 */
export function parseStatusObject(status: number, body: Uint8Array, terminal: ReadonlySet<string>): DeferredPoll {
  if (status === 404) return { kind: "gone" };
  if (status !== 200) return { kind: "no_answer", why: `status ${status}` };
  const obj = jsonObject(body);
  if (!obj) return { kind: "no_answer", why: "not JSON" };
  const s = typeof obj.status === "string" ? obj.status : "";
  if (!terminal.has(s)) return { kind: "running", status: s || "unknown", object: obj };
  const usage = typeof obj.usage === "object" && obj.usage !== null ? usageFromObject(obj.usage as Record<string, unknown>) : null;
  return { kind: "terminal", status: s, usage, object: obj };
}

/** A background response (`background: true`): `GET /v1/responses/{id}` until a terminal status; its usage is in the object. */
export const responseKind: DeferredKindHandler = {
  api: "openai",
  pollBytesMax: DEFERRED_RESPONSE_BYTES_MAX,
  poll: (row) => ({ path: `/v1/responses/${row.objectId}` }),
  parse(status, body) {
    const poll = parseStatusObject(status, body, TERMINAL_STATUSES);
    // A terminal response without a usage object is charged nothing (docs/billing.md, "Background responses").
    return poll.kind === "terminal" ? { ...poll, usage: poll.usage ?? { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 } } : poll;
  },
  endCause: endCauseOf,
};

/** The kinds a gateway polls (a row of a kind not listed waits for a gateway that knows it); `deferred_registry.ts` lists them. */
export type DeferredKinds = Partial<Record<DeferredKind, DeferredKindHandler>>;
