import assert from "node:assert/strict";
import { ANTHROPIC_INFERENCE_PATHS, checkForward, ForwardRefusedError, OPENAI_INFERENCE_PATHS } from "./forward_rules.ts";

Deno.test("forward rules: every inference path is forwarded as a POST, with only allowlisted query parameters", () => {
  for (const path of OPENAI_INFERENCE_PATHS) assert.deepEqual(checkForward("openai", "POST", path), { path, query: "" });
  for (const path of ANTHROPIC_INFERENCE_PATHS) assert.deepEqual(checkForward("anthropic", "POST", path), { path, query: "" });
  assert.deepEqual(checkForward("anthropic", "POST", "/v1/messages?beta=true&x=1"), { path: "/v1/messages", query: "?beta=true" });
  assert.deepEqual(checkForward("openai", "POST", "/v1/chat/completions?api-version=2020-01-01&x=y"), { path: "/v1/chat/completions", query: "" });
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
  ];
  for (const [api, method, path] of refused) {
    assert.throws(() => checkForward(api, method, path), ForwardRefusedError, `${api} ${method} ${path}`);
  }
});
