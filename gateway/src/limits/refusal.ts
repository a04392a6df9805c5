/**
 * A limit's refusal as the API answers it: 429 in the route's provider shape, with `retry-after` (seconds),
 * `retry-after-ms`, and the rate-limit headers each family's SDKs and clients read (OpenAI's `x-ratelimit-*`,
 * Anthropic's `anthropic-ratelimit-*`), so the official SDKs' own retries wait the right time.
 */
import type { ApiFamily, BodyFields } from "@wellspring/protocol";
import { GatewayError } from "../errors.ts";
import type { LimitName, Refusal } from "./limiter.ts";

/** Retry-After for a concurrency refusal: a request in flight may end at any moment, seconds. */
export const CONCURRENCY_RETRY_AFTER_SECONDS = 1;

const WORDS: Record<LimitName, string> = {
  key_rpm: "this API key's limit of requests per minute",
  key_tpm: "this API key's limit of tokens per minute",
  key_concurrency: "this API key's limit of requests in flight at once",
  key_budget: "this API key's monthly budget",
  user_concurrency: "your account's limit of requests in flight at once",
  agent_rpm: "the serving capacity's limit of requests per minute",
  agent_tpm: "the serving capacity's limit of tokens per minute",
  agent_concurrency: "the serving capacity's limit of requests in flight at once",
};

const UNIT: Partial<Record<LimitName, "requests" | "tokens">> = { key_rpm: "requests", agent_rpm: "requests", key_tpm: "tokens", agent_tpm: "tokens" };

export function refusalError(r: Refusal, api: ApiFamily): GatewayError {
  if (r.limit === "key_budget") {
    return new GatewayError("budget_exceeded", `You reached ${WORDS.key_budget} (${r.capacity} µ$ per UTC month); it renews on the 1st (UTC).`);
  }
  const waitMs = r.retryAfterMs ?? CONCURRENCY_RETRY_AFTER_SECONDS * 1000;
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  const headers: Record<string, string> = {};
  const unit = UNIT[r.limit];
  if (unit) {
    const remaining = String(Math.max(0, r.remaining));
    if (api === "anthropic") {
      headers[`anthropic-ratelimit-${unit}-limit`] = String(r.capacity);
      headers[`anthropic-ratelimit-${unit}-remaining`] = remaining;
      headers[`anthropic-ratelimit-${unit}-reset`] = new Date(Date.now() + waitMs).toISOString();
    } else {
      headers[`x-ratelimit-limit-${unit}`] = String(r.capacity);
      headers[`x-ratelimit-remaining-${unit}`] = remaining;
      headers[`x-ratelimit-reset-${unit}`] = `${(waitMs / 1000).toFixed(3)}s`;
    }
  }
  const per = unit ? `${r.capacity} per minute` : `${r.capacity}`;
  return new GatewayError("rate_limited", `Rate limit reached: ${WORDS[r.limit]} (${per}). Retry in ${seconds} s.`, {
    retryAfterSeconds: seconds,
    retryAfterMs: waitMs,
    headers,
  });
}

/**
 * Tokens a request is counted for against TPM before it runs: its input (≈ 4 bytes a token) and its output cap
 * times the results asked for; corrected to the provider's usage when it settles.
 */
export function estimatedTokens(fields: BodyFields, inputBytes: number): number {
  const results = Math.max(fields.n ?? 1, fields.bestOf ?? 1, 1);
  return Math.ceil(inputBytes / 4) + (fields.maxOutputTokens ?? 0) * results;
}
