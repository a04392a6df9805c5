/**
 * Query parameters that reach a provider. The hub forwards only these, and the agent drops everything else
 * again (it does not trust the hub's filtering): a user's query string could otherwise switch provider
 * features the hub neither bills nor knows (an Azure `api-version`, an undocumented flag).
 */
import type { ApiFamily } from "./messages.ts";

/** Per API family, each forwarded parameter and the only values it may carry. */
export const FORWARDED_QUERY_PARAMS: Readonly<Record<ApiFamily, Readonly<Record<string, readonly string[]>>>> = {
  openai: {},
  // The official Anthropic SDK calls beta methods as `POST /v1/messages?beta=true`.
  anthropic: { beta: ["true"] },
};

/**
 * The forwarded part of `search` (`?a=b&…` or empty): allowed names with allowed values, each once, in the
 * order of the allowlist. Returns `""` or a string starting with `?`.
 */
export function forwardedQuery(api: ApiFamily, search: string): string {
  const allowed = FORWARDED_QUERY_PARAMS[api];
  const names = Object.keys(allowed);
  if (names.length === 0 || search.length <= 1) return "";
  const given = new URLSearchParams(search);
  const kept: string[] = [];
  for (const name of names) {
    const value = given.getAll(name).find((v) => allowed[name]!.includes(v));
    if (value !== undefined) kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`);
  }
  return kept.length === 0 ? "" : `?${kept.join("&")}`;
}
