/** The public API surface: which paths exist, their API family, and how their routing fields are read. */
import type { ApiFamily } from "@wellspring/protocol";

import type { BillingUnit } from "../billing/worst_case.ts";

export interface ProxyRoute {
  /** The path, or for a stored-object route its template (`/v1/responses/{id}`), as records and metrics name it. */
  path: string;
  api: ApiFamily;
  /**
   * Body kind the route takes: JSON (model in the object), multipart (model as a form field), or none (a call
   * on a stored object: routed by the object's id to the agent that made it, under the model that made it).
   */
  body: "json" | "multipart" | "none";
  /** What the provider bills the call by; `free` routes are never charged (and are rate-limited instead). */
  billing: BillingUnit;
}

const ROUTES: ProxyRoute[] = [
  { path: "/v1/chat/completions", api: "openai", body: "json", billing: "tokens" },
  { path: "/v1/completions", api: "openai", body: "json", billing: "tokens" },
  { path: "/v1/responses", api: "openai", body: "json", billing: "tokens" },
  { path: "/v1/embeddings", api: "openai", body: "json", billing: "input_tokens" },
  // Moderations are free at the provider.
  { path: "/v1/moderations", api: "openai", body: "json", billing: "free" },
  { path: "/v1/images/generations", api: "openai", body: "json", billing: "images" },
  { path: "/v1/images/edits", api: "openai", body: "multipart", billing: "images" },
  { path: "/v1/images/variations", api: "openai", body: "multipart", billing: "images" },
  { path: "/v1/audio/speech", api: "openai", body: "json", billing: "speech" },
  { path: "/v1/audio/transcriptions", api: "openai", body: "multipart", billing: "transcription" },
  { path: "/v1/audio/translations", api: "openai", body: "multipart", billing: "transcription" },
  { path: "/v1/messages", api: "anthropic", body: "json", billing: "tokens" },
  // Token counting is free at the provider.
  { path: "/v1/messages/count_tokens", api: "anthropic", body: "json", billing: "free" },
];

const BY_PATH = new Map(ROUTES.map((r) => [r.path, r]));

/**
 * The Files API upload (OpenAI): a multipart body streamed to one agent with an OpenAI upstream; free (the
 * provider does not charge an upload; storage is the owner's) and rate-limited with the other free routes.
 */
export const FILE_UPLOAD_ROUTE: ProxyRoute = { path: "/v1/files", api: "openai", body: "multipart", billing: "free" };

/**
 * Anthropic's Message Batch creation: a JSON body of up to 100,000 requests (one model), streamed to one agent with
 * an Anthropic key while the hub sums its worst case for the hold (billing/message_batch_body.ts); billed later, at
 * batch prices, by its results (docs/billing.md, "Message Batches").
 */
export const MESSAGE_BATCH_CREATE_ROUTE: ProxyRoute = { path: "/v1/messages/batches", api: "anthropic", body: "json", billing: "tokens" };

/**
 * The Batch API's create call (OpenAI): a JSON body naming an uploaded batch input file, routed to the agent that
 * keeps the file; it holds the batch's worst case (read from the file, `billing/batch_input.ts`) at batch prices,
 * and its charge is deferred to the batch's end (docs/billing.md, "Batches").
 */
export const BATCH_CREATE_ROUTE: ProxyRoute = { path: "/v1/batches", api: "openai", body: "json", billing: "tokens" };

/** A call on a stored provider object, routed to the agent (provider key) that created it. */
export interface StoredObjectCall {
  /** What the object is: a Responses API response, a file (Files API), a batch (Batch API) or a message batch (Anthropic). */
  kind: "response" | "file" | "batch" | "message_batch";
  route: ProxyRoute;
  method: "GET" | "DELETE" | "POST";
  /** The object's id, from the path. */
  objectId: string;
  /** The path the provider is asked (the id in place). */
  upstreamPath: string;
  /** The call deletes the object: its route is forgotten once the provider confirms. */
  deletes: boolean;
}

/** A Responses API response id as a path segment. */
const RESPONSE_ID_SEGMENT = "(resp_[A-Za-z0-9_-]{1,200})";

/** A Message Batch id as a path segment. */
const MESSAGE_BATCH_ID_SEGMENT = "(msgbatch_[A-Za-z0-9_-]{1,200})";
/** A batch id (Batch API) as a path segment. */
const BATCH_ID_SEGMENT = "(batch_[A-Za-z0-9_-]{1,200})";

/** A file id (Files API) as a path segment. */
const FILE_ID_SEGMENT = "(file-[A-Za-z0-9_-]{1,200})";

/**
 * The stored-object calls the gateway routes (Responses API: retrieve, delete, cancel, input items; Files API:
 * retrieve, delete, content; Batch API: retrieve, cancel; Message Batches: retrieve, cancel, results, delete); all
 * free at the provider.
 */
const STORED_OBJECT_ROUTES: { kind: StoredObjectCall["kind"]; method: StoredObjectCall["method"]; pattern: RegExp; route: ProxyRoute; deletes: boolean }[] = [
  { kind: "response", method: "GET", pattern: new RegExp(`^/v1/responses/${RESPONSE_ID_SEGMENT}$`), route: storedRoute("/v1/responses/{id}"), deletes: false },
  {
    kind: "response",
    method: "DELETE",
    pattern: new RegExp(`^/v1/responses/${RESPONSE_ID_SEGMENT}$`),
    route: storedRoute("/v1/responses/{id}"),
    deletes: true,
  },
  {
    kind: "response",
    method: "POST",
    pattern: new RegExp(`^/v1/responses/${RESPONSE_ID_SEGMENT}/cancel$`),
    route: storedRoute("/v1/responses/{id}/cancel"),
    deletes: false,
  },
  {
    kind: "response",
    method: "GET",
    pattern: new RegExp(`^/v1/responses/${RESPONSE_ID_SEGMENT}/input_items$`),
    route: storedRoute("/v1/responses/{id}/input_items"),
    deletes: false,
  },
  { kind: "file", method: "GET", pattern: new RegExp(`^/v1/files/${FILE_ID_SEGMENT}$`), route: storedRoute("/v1/files/{id}"), deletes: false },
  { kind: "file", method: "DELETE", pattern: new RegExp(`^/v1/files/${FILE_ID_SEGMENT}$`), route: storedRoute("/v1/files/{id}"), deletes: true },
  { kind: "file", method: "GET", pattern: new RegExp(`^/v1/files/${FILE_ID_SEGMENT}/content$`), route: storedRoute("/v1/files/{id}/content"), deletes: false },
  { kind: "batch", method: "GET", pattern: new RegExp(`^/v1/batches/${BATCH_ID_SEGMENT}$`), route: storedRoute("/v1/batches/{id}"), deletes: false },
  {
    kind: "batch",
    method: "POST",
    pattern: new RegExp(`^/v1/batches/${BATCH_ID_SEGMENT}/cancel$`),
    route: storedRoute("/v1/batches/{id}/cancel"),
    deletes: false,
  },
  ...(["GET", "DELETE"] as const).map((method) => ({
    kind: "message_batch" as const,
    method,
    pattern: new RegExp(`^/v1/messages/batches/${MESSAGE_BATCH_ID_SEGMENT}$`),
    route: storedRoute("/v1/messages/batches/{id}", "anthropic"),
    deletes: method === "DELETE",
  })),
  {
    kind: "message_batch",
    method: "POST",
    pattern: new RegExp(`^/v1/messages/batches/${MESSAGE_BATCH_ID_SEGMENT}/cancel$`),
    route: storedRoute("/v1/messages/batches/{id}/cancel", "anthropic"),
    deletes: false,
  },
  {
    kind: "message_batch",
    method: "GET",
    pattern: new RegExp(`^/v1/messages/batches/${MESSAGE_BATCH_ID_SEGMENT}/results$`),
    route: storedRoute("/v1/messages/batches/{id}/results", "anthropic"),
    deletes: false,
  },
];

function storedRoute(path: string, api: ApiFamily = "openai"): ProxyRoute {
  return { path, api, body: "none", billing: "free" };
}

/**
 * The stored-object call a request is, or null when its path is none of them. A path that is one but with
 * another method answers `method_not_allowed` (thrown as `{ allowed }`).
 */
export function findStoredObjectCall(method: string, pathname: string): StoredObjectCall | { allowed: string[] } | null {
  const path = pathname.length > 1 && pathname.endsWith("/") ? pathname.slice(0, -1) : pathname;
  const allowed: string[] = [];
  for (const r of STORED_OBJECT_ROUTES) {
    const m = r.pattern.exec(path);
    if (!m) continue;
    if (r.method !== method) {
      allowed.push(r.method);
      continue;
    }
    return { kind: r.kind, route: r.route, method: r.method, objectId: m[1]!, upstreamPath: path, deletes: r.deletes };
  }
  return allowed.length ? { allowed } : null;
}

export function findRoute(pathname: string): ProxyRoute | undefined {
  return BY_PATH.get(pathname.length > 1 && pathname.endsWith("/") ? pathname.slice(0, -1) : pathname);
}

/** The family whose error shape a path answers in (Anthropic for /v1/messages*, else OpenAI). */
export function familyOfPath(pathname: string): ApiFamily {
  return pathname.startsWith("/v1/messages") ? "anthropic" : "openai";
}

/**
 * The Assistants API (assistants, threads, runs, messages, vector stores' assistant tools): OpenAI sunset it on
 * 2026-08-26, so the hub answers its paths with a clear error instead of forwarding them.
 */
export function isAssistantsPath(pathname: string): boolean {
  return /^\/v1\/(assistants|threads)(\/|$)/.test(pathname);
}

/** A `/v1/files` call made with Anthropic's client (its version or the Files API beta header), not OpenAI's. */
export function isAnthropicFilesCall(pathname: string, headers: Record<string, string | string[] | undefined>): boolean {
  return /^\/v1\/files(\/|$)/.test(pathname) && (headers["anthropic-version"] !== undefined || headers["anthropic-beta"] !== undefined);
}

/** Request headers forwarded to the provider. Everything else — credentials above all — stays at the hub. */
export const FORWARDED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  "content-type",
  "accept",
  "anthropic-version",
  "anthropic-beta",
  "openai-beta",
  "idempotency-key",
]);
