/**
 * What the agent forwards to a provider: per API family, an allowlist of methods and inference paths, and of
 * query parameters (protocol/src/query.ts), plus the calls on a stored Responses API response (retrieve, delete,
 * cancel, input items: the hub routes them to the agent whose key made it) and the Files API's upload, retrieve,
 * content and delete, and the Batch API's create, retrieve and cancel (OpenAI keys only; never the file or batch
 * lists, which the hub answers itself so that no user sees the owner's other files and batches), and Anthropic's
 * Message Batches: create, retrieve, cancel, results and delete (never the batch list, answered by the hub for the
 * same reason). The hub sends only these, but the
 * agent holds the owner's key and checks for itself: a head for anything else (an account or admin endpoint,
 * a listing, another store) is refused with RESET `PATH_FORBIDDEN` before any byte reaches the provider.
 */
import { forwardedQuery, MESSAGE_BATCHES_PATH, type ApiFamily } from "../../protocol/src/mod.ts";

/** OpenAI's inference endpoints (Azure OpenAI serves the same under `/openai/v1/…`). */
export const OPENAI_INFERENCE_PATHS: readonly string[] = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/responses",
  "/v1/embeddings",
  "/v1/moderations",
  "/v1/images/generations",
  "/v1/images/edits",
  "/v1/images/variations",
  "/v1/audio/speech",
  "/v1/audio/transcriptions",
  "/v1/audio/translations",
];

/** Anthropic's endpoints taking a POST body: inference, token counting, and a Message Batch's creation. */
export const ANTHROPIC_INFERENCE_PATHS: readonly string[] = ["/v1/messages", "/v1/messages/count_tokens", MESSAGE_BATCHES_PATH];

const PATHS: Record<ApiFamily, ReadonlySet<string>> = {
  openai: new Set(OPENAI_INFERENCE_PATHS),
  anthropic: new Set(ANTHROPIC_INFERENCE_PATHS),
};

/** The method of every inference call. */
export const FORWARDED_METHOD = "POST";

/** Calls on one stored response, by path pattern (OpenAI only): the methods each takes. The id is one plain segment. */
const STORED_RESPONSE_CALLS: readonly { pattern: RegExp; methods: readonly string[] }[] = [
  { pattern: /^\/v1\/responses\/resp_[A-Za-z0-9_-]{1,200}$/, methods: ["GET", "DELETE"] },
  { pattern: /^\/v1\/responses\/resp_[A-Za-z0-9_-]{1,200}\/cancel$/, methods: ["POST"] },
  { pattern: /^\/v1\/responses\/resp_[A-Za-z0-9_-]{1,200}\/input_items$/, methods: ["GET"] },
  // Files API: one file's object, its content, its deletion (no body; the hub routes them by the file's id).
  { pattern: /^\/v1\/files\/file-[A-Za-z0-9_-]{1,200}$/, methods: ["GET", "DELETE"] },
  { pattern: /^\/v1\/files\/file-[A-Za-z0-9_-]{1,200}\/content$/, methods: ["GET"] },
  // Batch API: one batch's object and its cancel (the hub routes them by the batch's id).
  { pattern: /^\/v1\/batches\/batch_[A-Za-z0-9_-]{1,200}$/, methods: ["GET"] },
  { pattern: /^\/v1\/batches\/batch_[A-Za-z0-9_-]{1,200}\/cancel$/, methods: ["POST"] },
];

/** Calls on one Message Batch (Anthropic only; no body: the hub routes them by the batch's id). */
const STORED_BATCH_CALLS: readonly { pattern: RegExp; methods: readonly string[] }[] = [
  { pattern: /^\/v1\/messages\/batches\/msgbatch_[A-Za-z0-9_-]{1,200}$/, methods: ["GET", "DELETE"] },
  { pattern: /^\/v1\/messages\/batches\/msgbatch_[A-Za-z0-9_-]{1,200}\/cancel$/, methods: ["POST"] },
  { pattern: /^\/v1\/messages\/batches\/msgbatch_[A-Za-z0-9_-]{1,200}\/results$/, methods: ["GET"] },
];

/** The calls on one stored object a family has: responses and files (OpenAI), message batches (Anthropic). */
const STORED_CALLS: Record<ApiFamily, readonly { pattern: RegExp; methods: readonly string[] }[]> = {
  openai: STORED_RESPONSE_CALLS,
  anthropic: STORED_BATCH_CALLS,
};

/** A Message Batch's creation (its body is a list of requests, each naming the model: the agent reads them all). */
export function isMessageBatchCreate(api: ApiFamily, pathAndQuery: string): boolean {
  const q = pathAndQuery.indexOf("?");
  return api === "anthropic" && (q < 0 ? pathAndQuery : pathAndQuery.slice(0, q)) === MESSAGE_BATCHES_PATH;
}

/** The Files API upload path (POST, multipart; names no model in its body). */
export const FILE_UPLOAD_PATH = "/v1/files";

/** The Batch API's create path (POST, JSON naming an input file; names no model in its body). */
export const BATCH_CREATE_PATH = "/v1/batches";

/** A Batch API call (create, or a call on one batch): served only from an OpenAI key, and no prompt itself. */
export function isBatchesCall(api: ApiFamily, pathAndQuery: string): boolean {
  const q = pathAndQuery.indexOf("?");
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  return api === "openai" && (path === BATCH_CREATE_PATH || path.startsWith(`${BATCH_CREATE_PATH}/`));
}

/** A Files API call (upload, or a call on one file): served only from an OpenAI key. */
export function isFilesCall(api: ApiFamily, pathAndQuery: string): boolean {
  const q = pathAndQuery.indexOf("?");
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  return api === "openai" && (path === FILE_UPLOAD_PATH || path.startsWith(`${FILE_UPLOAD_PATH}/`));
}

/** Longest path (without the query) the agent considers, characters. */
export const FORWARDED_PATH_CHARS_MAX = 256;

/** A call on a stored response, file or message batch (it takes no body and names no model: the hub routes it by the object's id). */
export function isStoredResponseCall(api: ApiFamily, pathAndQuery: string): boolean {
  const q = pathAndQuery.indexOf("?");
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  return STORED_CALLS[api].some((c) => c.pattern.test(path));
}

export class ForwardRefusedError extends Error {
  constructor(reason: string) {
    super(`Cannot forward: ${reason}`);
    this.name = "ForwardRefusedError";
  }
}

export interface ForwardedRequest {
  /** One of the allowlisted paths, exactly. */
  path: string;
  /** The allowlisted query parameters (`?beta=true`) or `""`. */
  query: string;
}

/** Checks a request head's method and path for `api`; throws ForwardRefusedError for anything not allowlisted. */
export function checkForward(api: ApiFamily, method: string, pathAndQuery: string): ForwardedRequest {
  const q = pathAndQuery.indexOf("?");
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  // Exact match refuses these too; they are named so that no later normalisation can let them through.
  if (path.length > FORWARDED_PATH_CHARS_MAX || path.includes("..") || path.includes("%") || path.includes("//") || path.includes("\\")) {
    throw new ForwardRefusedError("the path is not a plain inference path");
  }
  const stored = STORED_CALLS[api].find((c) => c.pattern.test(path));
  if (stored) {
    if (!stored.methods.includes(method)) throw new ForwardRefusedError(`method ${method.slice(0, 16)} is not forwarded on ${path}`);
  } else {
    if (!PATHS[api].has(path) && !(api === "openai" && (path === FILE_UPLOAD_PATH || path === BATCH_CREATE_PATH)))
      throw new ForwardRefusedError(`${path} is not an inference endpoint the agent forwards`);
    if (method !== FORWARDED_METHOD) throw new ForwardRefusedError(`method ${method.slice(0, 16)} is not forwarded`);
  }
  return { path, query: q < 0 ? "" : forwardedQuery(api, pathAndQuery.slice(q), path) };
}
