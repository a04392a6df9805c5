import assert from "node:assert/strict";
import { windowFromError, windowsFromMetadata } from "./context_windows.ts";

Deno.test("a provider's context-length error names the model's window", () => {
  assert.equal(
    windowFromError(
      '{"error":{"message":"This model\'s maximum context length is 128000 tokens. However, your messages resulted in 250000 tokens.","code":"context_length_exceeded"}}',
    ),
    128_000,
  );
  assert.equal(
    windowFromError('{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}'),
    200_000,
  );
  assert.equal(windowFromError('{"error":{"message":"Invalid value for temperature"}}'), null);
  // Implausible numbers are misreadings, not windows.
  assert.equal(windowFromError("maximum context length is 3 tokens"), null);
});

Deno.test("a model list's context_window, context_length or max_input_tokens", () => {
  const windows = windowsFromMetadata({
    data: [
      { id: "a", context_window: 8192 },
      { id: "b", context_length: 32_768 },
      { id: "c", max_input_tokens: 200_000 },
      { id: "d" },
      { id: "e", context_window: "big" },
      { context_window: 1000 },
    ],
  });
  assert.deepEqual(
    [...windows],
    [
      ["a", 8192],
      ["b", 32_768],
      ["c", 200_000],
    ],
  );
  assert.equal(windowsFromMetadata(null).size, 0);
});
