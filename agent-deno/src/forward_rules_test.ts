import assert from "node:assert/strict";
import {
  ANTHROPIC_INFERENCE_PATHS,
  checkForward,
  ForwardRefusedError,
  isBatchesCall,
  isFilesCall,
  isMessageBatchCreate,
  isStoredResponseCall,
  OPENAI_INFERENCE_PATHS,
} from "./forward_rules.ts";

Deno.test("forward rules: every inference path is forwarded as a POST, with only allowlisted query parameters", () => {
  for (const path of OPENAI_INFERENCE_PATHS) assert.deepEqual(checkForward("openai", "POST", path), { path, query: "" });
  for (const path of ANTHROPIC_INFERENCE_PATHS) assert.deepEqual(checkForward("anthropic", "POST", path), { path, query: "" });
  assert.deepEqual(checkForward("anthropic", "POST", "/v1/messages?beta=true&x=1"), { path: "/v1/messages", query: "?beta=true" });
  assert.deepEqual(checkForward("openai", "POST", "/v1/chat/completions?api-version=2020-01-01&x=y"), { path: "/v1/chat/completions", query: "" });
});

Deno.test("forward rules: a stored response is retrieved, deleted, cancelled and its input items listed and paged", () => {
  const id = "resp_0123abcdEF_-x";
  assert.deepEqual(checkForward("openai", "GET", `/v1/responses/${id}`), { path: `/v1/responses/${id}`, query: "" });
  assert.deepEqual(checkForward("openai", "DELETE", `/v1/responses/${id}`), { path: `/v1/responses/${id}`, query: "" });
  assert.deepEqual(checkForward("openai", "POST", `/v1/responses/${id}/cancel`), { path: `/v1/responses/${id}/cancel`, query: "" });
  const items = `/v1/responses/${id}/input_items`;
  assert.deepEqual(checkForward("openai", "GET", `${items}?order=asc&after=msg_1&limit=5&x=1`), { path: items, query: "?limit=5&after=msg_1&order=asc" });
  // Free values only where the pattern allows them: a page of 0 or 101, a cursor with a slash, an unknown include.
  assert.deepEqual(checkForward("openai", "GET", `${items}?limit=101&after=a%2Fb&order=up&include[]=secrets`), { path: items, query: "" });
  assert.deepEqual(checkForward("openai", "GET", `${items}?limit=0&include%5B%5D=reasoning.encrypted_content&include[]=reasoning.encrypted_content`), {
    path: items,
    query: "?include%5B%5D=reasoning.encrypted_content",
  });
  assert.deepEqual(checkForward("openai", "GET", `/v1/responses/${id}?include[]=message.output_text.logprobs&limit=5`), {
    path: `/v1/responses/${id}`,
    query: "?include%5B%5D=message.output_text.logprobs",
  });
  assert.deepEqual(checkForward("openai", "POST", `/v1/responses/${id}/cancel?order=asc`), { path: `/v1/responses/${id}/cancel`, query: "" });
});

Deno.test("forward rules: a file is uploaded, retrieved, downloaded and deleted (OpenAI only; never listed)", () => {
  const id = "file-AbC123_-x";
  assert.deepEqual(checkForward("openai", "POST", "/v1/files?purpose=x"), { path: "/v1/files", query: "" });
  assert.deepEqual(checkForward("openai", "GET", `/v1/files/${id}`), { path: `/v1/files/${id}`, query: "" });
  assert.deepEqual(checkForward("openai", "DELETE", `/v1/files/${id}`), { path: `/v1/files/${id}`, query: "" });
  assert.deepEqual(checkForward("openai", "GET", `/v1/files/${id}/content?x=1`), { path: `/v1/files/${id}/content`, query: "" });
  assert.ok(isFilesCall("openai", "/v1/files") && isFilesCall("openai", `/v1/files/${id}/content`));
  assert.ok(!isFilesCall("anthropic", "/v1/files") && !isFilesCall("openai", "/v1/filesx"));
  // The calls on one file carry no body; the upload does.
  assert.ok(isStoredResponseCall("openai", `/v1/files/${id}`) && isStoredResponseCall("openai", `/v1/files/${id}/content`));
  assert.ok(!isStoredResponseCall("openai", "/v1/files"));
  for (const [api, method, path] of [
    ["openai", "GET", "/v1/files"],
    ["openai", "DELETE", "/v1/files"],
    ["openai", "POST", `/v1/files/${id}`],
    ["openai", "DELETE", `/v1/files/${id}/content`],
    ["openai", "GET", "/v1/files/file_abc"],
    ["openai", "GET", `/v1/files/${id}/../../organization/admin_api_keys`],
    ["anthropic", "GET", `/v1/files/${id}`],
    ["anthropic", "POST", "/v1/files"],
  ] as const) {
    assert.throws(() => checkForward(api, method, path), ForwardRefusedError, `${api} ${method} ${path}`);
  }
});

Deno.test("forward rules: a message batch is created, retrieved, cancelled, its results read and deleted (Anthropic only; never listed)", () => {
  const id = "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d";
  assert.deepEqual(checkForward("anthropic", "POST", "/v1/messages/batches?beta=true&x=1"), { path: "/v1/messages/batches", query: "?beta=true" });
  assert.deepEqual(checkForward("anthropic", "GET", `/v1/messages/batches/${id}`), { path: `/v1/messages/batches/${id}`, query: "" });
  assert.deepEqual(checkForward("anthropic", "DELETE", `/v1/messages/batches/${id}`), { path: `/v1/messages/batches/${id}`, query: "" });
  assert.deepEqual(checkForward("anthropic", "POST", `/v1/messages/batches/${id}/cancel`), { path: `/v1/messages/batches/${id}/cancel`, query: "" });
  assert.deepEqual(checkForward("anthropic", "GET", `/v1/messages/batches/${id}/results`), { path: `/v1/messages/batches/${id}/results`, query: "" });
  assert.ok(isStoredResponseCall("anthropic", `/v1/messages/batches/${id}/results`) && !isStoredResponseCall("anthropic", "/v1/messages/batches"));
  assert.ok(isMessageBatchCreate("anthropic", "/v1/messages/batches") && !isMessageBatchCreate("openai", "/v1/messages/batches"));
  for (const [api, method, path] of [
    ["anthropic", "GET", "/v1/messages/batches"],
    ["anthropic", "GET", `/v1/messages/batches/${id}/cancel`],
    ["anthropic", "POST", `/v1/messages/batches/${id}`],
    ["anthropic", "DELETE", `/v1/messages/batches/${id}/results`],
    ["anthropic", "GET", "/v1/messages/batches/batch_abc"],
    ["anthropic", "GET", `/v1/messages/batches/${id}/../../organizations/api_keys`],
    ["anthropic", "GET", `/v1/messages/batches/${id}/results/extra`],
    ["openai", "GET", `/v1/messages/batches/${id}`],
    ["openai", "POST", "/v1/messages/batches"],
  ] as const) {
    assert.throws(() => checkForward(api, method, path), ForwardRefusedError, `${api} ${method} ${path}`);
  }
});

Deno.test("forward rules: a batch is created, retrieved and cancelled (OpenAI only; never listed)", () => {
  const id = "batch_AbC123_-x";
  assert.deepEqual(checkForward("openai", "POST", "/v1/batches"), { path: "/v1/batches", query: "" });
  assert.deepEqual(checkForward("openai", "GET", `/v1/batches/${id}`), { path: `/v1/batches/${id}`, query: "" });
  assert.deepEqual(checkForward("openai", "POST", `/v1/batches/${id}/cancel`), { path: `/v1/batches/${id}/cancel`, query: "" });
  assert.ok(isBatchesCall("openai", "/v1/batches") && isBatchesCall("openai", `/v1/batches/${id}/cancel`));
  assert.ok(!isBatchesCall("anthropic", "/v1/batches") && !isBatchesCall("openai", "/v1/batchesx"));
  assert.ok(isStoredResponseCall("openai", `/v1/batches/${id}`) && !isStoredResponseCall("openai", "/v1/batches"));
  for (const [api, method, path] of [
    ["openai", "GET", "/v1/batches"],
    ["openai", "DELETE", `/v1/batches/${id}`],
    ["openai", "GET", `/v1/batches/${id}/cancel`],
    ["openai", "POST", "/v1/batches/file-abc"],
    ["anthropic", "POST", "/v1/batches"],
    ["anthropic", "GET", `/v1/batches/${id}`],
  ] as const) {
    assert.throws(() => checkForward(api, method, path), ForwardRefusedError, `${api} ${method} ${path}`);
  }
});

Deno.test("forward rules: anything else is refused", () => {
  const refused: [Parameters<typeof checkForward>[0], string, string][] = [
    ["openai", "POST", "/v1/../organization/admin_api_keys"],
    ["openai", "POST", "/v1/chat/completions/../../organization/admin_api_keys"],
    ["openai", "POST", "/v1/organization/admin_api_keys"],
    ["openai", "POST", "/v1/chat/completions/"],
    ["openai", "POST", "/v1//chat/completions"],
    ["openai", "POST", "/v1/chat%2Fcompletions"],
    ["openai", "POST", "/v1/chat/completions\\..\\x"],
    ["openai", "POST", "/v1/messages"],
    ["anthropic", "POST", "/v1/chat/completions"],
    ["anthropic", "GET", "/v1/messages/batches"],
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
