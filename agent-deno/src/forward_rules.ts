/**
 * What the agent forwards to a provider: per API family, an allowlist of methods and inference paths, and of
 * query parameters (protocol/src/query.ts). The hub sends only these, but the agent holds the owner's key
 * and checks for itself: a head for anything else (an account or admin endpoint, a file store, a GET) is
 * refused with RESET `PATH_FORBIDDEN` before any byte reaches the provider.
 */
import { forwardedQuery, type ApiFamily } from "../../protocol/src/mod.ts";

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

export const ANTHROPIC_INFERENCE_PATHS: readonly string[] = ["/v1/messages", "/v1/messages/count_tokens"];

const PATHS: Record<ApiFamily, ReadonlySet<string>> = {
  openai: new Set(OPENAI_INFERENCE_PATHS),
  anthropic: new Set(ANTHROPIC_INFERENCE_PATHS),
};

/** The only method forwarded: every inference call is a POST. */
export const FORWARDED_METHOD = "POST";

/** Longest path (without the query) the agent considers, characters. */
export const FORWARDED_PATH_CHARS_MAX = 256;

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
  if (method !== FORWARDED_METHOD) throw new ForwardRefusedError(`method ${method.slice(0, 16)} is not forwarded`);
  const q = pathAndQuery.indexOf("?");
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  // Exact match refuses these too; they are named so that no later normalisation can let them through.
  if (path.length > FORWARDED_PATH_CHARS_MAX || path.includes("..") || path.includes("%") || path.includes("//") || path.includes("\\")) {
    throw new ForwardRefusedError("the path is not a plain inference path");
  }
  if (!PATHS[api].has(path)) throw new ForwardRefusedError(`${path} is not an inference endpoint the agent forwards`);
  return { path, query: q < 0 ? "" : forwardedQuery(api, pathAndQuery.slice(q)) };
}
