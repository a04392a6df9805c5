/**
 * API errors in each provider's own shape: OpenAI routes answer `{error:{message,type,param,code}}`,
 * Anthropic's `/v1/messages` answers `{type:"error",error:{type,message}}`. One table maps our codes.
 */
import type { ServerResponse } from "node:http";
import type { ApiFamily } from "@wellspring/protocol";

export type GatewayErrorCode =
  | "missing_api_key"
  | "invalid_api_key"
  | "key_expired"
  | "key_suspended"
  | "account_suspended"
  | "model_not_allowed"
  | "model_required"
  | "model_not_found"
  | "context_length_exceeded"
  | "route_not_found"
  | "api_retired"
  | "method_not_allowed"
  | "invalid_request"
  | "content_policy_violation"
  | "body_too_large"
  | "insufficient_quota"
  | "no_capacity"
  | "agent_unreachable"
  | "upstream_timeout"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "rate_limited"
  | "budget_exceeded"
  | "request_timeout"
  | "service_unavailable"
  | "internal_error";

interface Mapping {
  status: number;
  openaiType: string;
  anthropicType: string;
  /** May the caller retry the same request? */
  retry: boolean;
}

const TABLE: Record<GatewayErrorCode, Mapping> = {
  missing_api_key: { status: 401, openaiType: "invalid_request_error", anthropicType: "authentication_error", retry: false },
  invalid_api_key: { status: 401, openaiType: "invalid_request_error", anthropicType: "authentication_error", retry: false },
  key_expired: { status: 401, openaiType: "invalid_request_error", anthropicType: "authentication_error", retry: false },
  key_suspended: { status: 403, openaiType: "permission_error", anthropicType: "permission_error", retry: false },
  account_suspended: { status: 403, openaiType: "permission_error", anthropicType: "permission_error", retry: false },
  model_not_allowed: { status: 403, openaiType: "permission_error", anthropicType: "permission_error", retry: false },
  model_required: { status: 400, openaiType: "invalid_request_error", anthropicType: "invalid_request_error", retry: false },
  model_not_found: { status: 404, openaiType: "invalid_request_error", anthropicType: "not_found_error", retry: false },
  context_length_exceeded: { status: 400, openaiType: "invalid_request_error", anthropicType: "invalid_request_error", retry: false },
  route_not_found: { status: 404, openaiType: "invalid_request_error", anthropicType: "not_found_error", retry: false },
  api_retired: { status: 410, openaiType: "invalid_request_error", anthropicType: "not_found_error", retry: false },
  method_not_allowed: { status: 405, openaiType: "invalid_request_error", anthropicType: "invalid_request_error", retry: false },
  invalid_request: { status: 400, openaiType: "invalid_request_error", anthropicType: "invalid_request_error", retry: false },
  content_policy_violation: { status: 400, openaiType: "invalid_request_error", anthropicType: "invalid_request_error", retry: false },
  body_too_large: { status: 413, openaiType: "invalid_request_error", anthropicType: "request_too_large", retry: false },
  insufficient_quota: { status: 429, openaiType: "insufficient_quota", anthropicType: "invalid_request_error", retry: false },
  no_capacity: { status: 503, openaiType: "server_error", anthropicType: "overloaded_error", retry: true },
  agent_unreachable: { status: 502, openaiType: "server_error", anthropicType: "api_error", retry: true },
  upstream_timeout: { status: 504, openaiType: "server_error", anthropicType: "api_error", retry: true },
  forbidden: { status: 403, openaiType: "permission_error", anthropicType: "permission_error", retry: false },
  not_found: { status: 404, openaiType: "invalid_request_error", anthropicType: "not_found_error", retry: false },
  conflict: { status: 409, openaiType: "invalid_request_error", anthropicType: "invalid_request_error", retry: false },
  rate_limited: { status: 429, openaiType: "requests", anthropicType: "rate_limit_error", retry: true },
  budget_exceeded: { status: 429, openaiType: "insufficient_quota", anthropicType: "rate_limit_error", retry: false },
  request_timeout: { status: 408, openaiType: "invalid_request_error", anthropicType: "invalid_request_error", retry: false },
  service_unavailable: { status: 503, openaiType: "server_error", anthropicType: "overloaded_error", retry: true },
  internal_error: { status: 500, openaiType: "server_error", anthropicType: "api_error", retry: true },
};

export class GatewayError extends Error {
  constructor(
    readonly code: GatewayErrorCode,
    message: string,
    readonly options: {
      retryAfterSeconds?: number;
      /** Milliseconds, for SDKs that read `retry-after-ms` (both official ones do). */
      retryAfterMs?: number;
      param?: string | null;
      cause?: unknown;
      /** Extra response headers (rate-limit headers). */
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "GatewayError";
  }
  get status(): number {
    return TABLE[this.code].status;
  }
  get retry(): boolean {
    return TABLE[this.code].retry;
  }
}

export function errorBody(family: ApiFamily, error: GatewayError): Record<string, unknown> {
  const m = TABLE[error.code];
  if (family === "anthropic") return { type: "error", error: { type: m.anthropicType, message: error.message } };
  return { error: { message: error.message, type: m.openaiType, param: error.options.param ?? null, code: error.code } };
}

export function sendError(res: ServerResponse, family: ApiFamily, error: GatewayError, requestId?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(errorBody(family, error));
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  };
  if (requestId) headers["x-wellspring-request-id"] = requestId;
  if (error.options.retryAfterSeconds !== undefined) headers["retry-after"] = String(error.options.retryAfterSeconds);
  if (error.options.retryAfterMs !== undefined) headers["retry-after-ms"] = String(error.options.retryAfterMs);
  for (const [name, value] of Object.entries(error.options.headers ?? {})) headers[name] = value;
  if (family === "openai") headers["x-should-retry"] = String(error.retry);
  res.writeHead(error.status, headers);
  res.end(body);
}
