import assert from "node:assert/strict";
import { ANTHROPIC_INFERENCE_PATHS, checkForward, ForwardRefusedError, OPENAI_INFERENCE_PATHS } from "./forward_rules.ts";

Deno.test("forward rules: every inference path is forwarded as a POST, with only allowlisted query parameters", () => {
  for (const path of OPENAI_INFERENCE_PATHS) assert.deepEqual(checkForward("openai", "POST", path), { path, query: "" });
  for (const path of ANTHROPIC_INFERENCE_PATHS) assert.deepEqual(checkForward("anthropic", "POST", path), { path, query: "" });
  assert.deepEqual(checkForward("anthropic", "POST", "/v1/messages?beta=true&x=1"), { path: "/v1/messages", query: "?beta=true" });
  assert.deepEqual(checkForward("openai", "POST", "/v1/chat/completions?api-version=2020-01-01&x=y"), { path: "/v1/chat/completions", query: "" });
});

Deno.test("forward rules: a stored response is retrieved, deleted, cancelled and its input items listed, with no query", () => {
  const id = "resp_0123abcdEF_-x";
  assert.deepEqual(checkForward("openai", "GET", `/v1/responses/${id}`), { path: `/v1/responses/${id}`, query: "" });
  assert.deepEqual(checkForward("openai", "DELETE", `/v1/responses/${id}`), { path: `/v1/responses/${id}`, query: "" });
  assert.deepEqual(checkForward("openai", "POST", `/v1/responses/${id}/cancel`), { path: `/v1/responses/${id}/cancel`, query: "" });
  assert.deepEqual(checkForward("openai", "GET", `/v1/responses/${id}/input_items?limit=5&after=x`), { path: `/v1/responses/${id}/input_items`, query: "" });
});

Deno.test("forward rules: anything else is refused", () => {
  const refused: [Parameters<typeof checkForward>[0], string, string][] = [
    ["openai", "POST", "/v1/../organization/admin_api_keys"],
    ["openai", "POST", "/v1/chat/completions/../../organization/admin_api_keys"],
    ["openai", "POST", "/v1/files"],
    ["openai", "POST", "/v1/organization/admin_api_keys"],
    ["openai", "POST", "/v1/chat/completions/"],
    ["openai", "POST", "/v1//chat/completions"],
    ["openai", "POST", "/v1/chat%2Fcompletions"],
    ["openai", "POST", "/v1/chat/completions\\..\\x"],
    ["openai", "POST", "/v1/messages"],
    ["anthropic", "POST", "/v1/chat/completions"],
    ["anthropic", "POST", "/v1/messages/batches"],
    ["openai", "GET", "/v1/chat/completions"],
    ["openai", "DELETE", "/v1/chat/completions"],
    ["openai", "GET", "/v1/models"],
    // Stored responses: only their own methods, one plain id segment, OpenAI only.
    ["openai", "POST", "/v1/responses/resp_abc"],
    ["openai", "GET", "/v1/responses/resp_abc/cancel"],
    ["openai", "DELETE", "/v1/responses/resp_abc/input_items"],
    ["openai", "GET", "/v1/responses"],
    ["openai", "GET", "/v1/responses/file_abc"],
    ["openai", "GET", "/v1/responses/resp_abc/../../organization/admin_api_keys"],
    ["openai", "GET", "/v1/responses/resp_a%2Fb"],
    ["openai", "GET", "/v1/responses/resp_abc/input_items/extra"],
    ["anthropic", "GET", "/v1/responses/resp_abc"],
  ];
  for (const [api, method, path] of refused) {
    assert.throws(() => checkForward(api, method, path), ForwardRefusedError, `${api} ${method} ${path}`);
  }
});
