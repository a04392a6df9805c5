/**
 * Query parameters that reach a provider. The hub forwards only these, and the agent drops everything else
 * again (it does not trust the hub's filtering): a user's query string could otherwise switch provider
 * features the hub neither bills nor knows (an Azure `api-version`, an undocumented flag).
 *
 * A parameter is allowed per API family and, for the calls on a stored response, per path; each allowed
 * parameter names the values it may carry: a fixed list, or a pattern for free values (a page size, a cursor).
 */
import type { ApiFamily } from "./messages.ts";

/** The values one forwarded parameter may carry. */
export interface QueryParamRule {
  /** Exactly one of these, or a value matching `pattern` (anchored). */
  values?: readonly string[];
  pattern?: RegExp;
  /** Repeated parameters forwarded (`include[]=a&include[]=b`), distinct values; absent = the first valid one. */
  repeatMax?: number;
}

type QueryRules = Readonly<Record<string, QueryParamRule>>;

/** Per API family, each parameter every path of it may carry. */
export const FORWARDED_QUERY_PARAMS: Readonly<Record<ApiFamily, QueryRules>> = {
  openai: {},
  // The official Anthropic SDK calls beta methods as `POST /v1/messages?beta=true`.
  anthropic: { beta: { values: ["true"] } },
};

/** What a stored Responses API response's output or input items may include (OpenAI's `include` values). */
export const RESPONSE_INCLUDE_VALUES: readonly string[] = [
  "code_interpreter_call.outputs",
  "computer_call_output.output.image_url",
  "file_search_call.results",
  "message.input_image.image_url",
  "message.output_text.logprobs",
  "reasoning.encrypted_content",
  "web_search_call.action.sources",
  "web_search_call.results",
];
/** Distinct `include[]` values forwarded on one call (every documented one fits). */
export const RESPONSE_INCLUDE_MAX = RESPONSE_INCLUDE_VALUES.length;
/** Largest page of input items a list call asks for (OpenAI's own maximum). */
export const INPUT_ITEMS_LIMIT_MAX = 100;

const INCLUDE: QueryParamRule = { values: RESPONSE_INCLUDE_VALUES, repeatMax: RESPONSE_INCLUDE_MAX };
const RESPONSE_ID = "resp_[A-Za-z0-9_-]{1,200}";
/** A pagination cursor: an item id, one plain token. */
const ITEM_ID: QueryParamRule = { pattern: /^[A-Za-z0-9_-]{1,200}$/ };

/**
 * Parameters of the calls on one stored response (OpenAI only), by path: retrieve takes `include[]`; listing
 * input items pages with `limit` (1–100), `after`/`before` (item ids), `order` and takes `include[]`.
 */
export const STORED_RESPONSE_QUERY_PARAMS: readonly { pattern: RegExp; params: QueryRules }[] = [
  { pattern: new RegExp(`^/v1/responses/${RESPONSE_ID}$`), params: { "include[]": INCLUDE } },
  {
    pattern: new RegExp(`^/v1/responses/${RESPONSE_ID}/input_items$`),
    params: {
      limit: { pattern: /^(?:[1-9]|[1-9][0-9]|100)$/ },
      after: ITEM_ID,
      before: ITEM_ID,
      order: { values: ["asc", "desc"] },
      "include[]": INCLUDE,
    },
  },
];

function valid(rule: QueryParamRule, value: string): boolean {
  return (rule.values?.includes(value) ?? false) || (rule.pattern?.test(value) ?? false);
}

function rulesFor(api: ApiFamily, path: string): QueryRules {
  if (api === "openai") {
    const stored = STORED_RESPONSE_QUERY_PARAMS.find((s) => s.pattern.test(path));
    if (stored) return stored.params;
  }
  return FORWARDED_QUERY_PARAMS[api];
}

/**
 * The forwarded part of `search` (`?a=b&…` or empty) for a call on `path`: allowed names with valid values, in
 * the order of the allowlist, each once (a repeatable one: its distinct valid values, up to its maximum, in the
 * order given). Returns `""` or a string starting with `?`.
 */
export function forwardedQuery(api: ApiFamily, search: string, path: string): string {
  const allowed = rulesFor(api, path);
  const names = Object.keys(allowed);
  if (names.length === 0 || search.length <= 1) return "";
  const given = new URLSearchParams(search);
  const kept: string[] = [];
  for (const name of names) {
    const rule = allowed[name]!;
    const values = [...new Set(given.getAll(name))].filter((v) => valid(rule, v));
    for (const value of values.slice(0, rule.repeatMax ?? 1)) kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`);
  }
  return kept.length === 0 ? "" : `?${kept.join("&")}`;
}
