import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "./config.ts";

const valid = { name: "a", upstreams: [{ provider: "openai", apiKeyEnv: "OPENAI_API_KEY", models: ["gpt-4o-mini"] }] };

Deno.test("a valid config parses with defaults", () => {
  const c = parseConfig(valid);
  assert.equal(c.concurrentStreamsMax, 256);
  assert.equal(c.logLevel, "info");
  assert.equal(c.suspendedRetrySeconds, 300);
  assert.equal(parseConfig({ ...valid, suspendedRetrySeconds: 2 }).suspendedRetrySeconds, 2);
  assert.deepEqual(c.upstreams[0]!.models, ["gpt-4o-mini"]);
});

Deno.test("bad configs are refused with a message naming the field", () => {
  const cases: [unknown, RegExp][] = [
    [null, /must hold an object/],
    [{ upstreams: [] }, /at least one provider/],
    [{ upstreams: [{ provider: "relay", apiKey: "k", models: ["m"] }] }, /provider must be one of/],
    [{ upstreams: [{ provider: "openai", models: ["m"] }] }, /needs apiKey or apiKeyEnv/],
    [{ upstreams: [{ provider: "openai", apiKey: "k", models: [] }] }, /models must list/],
    [{ upstreams: [{ provider: "azure", apiKey: "k", models: ["m"] }] }, /resource name is missing/],
    [{ upstreams: [{ provider: "openai", apiKeyEnv: "lower-case", models: ["m"] }] }, /environment variable name/],
    [{ ...valid, concurrentStreamsMax: 0 }, /concurrentStreamsMax/],
    [{ ...valid, suspendedRetrySeconds: 0 }, /suspendedRetrySeconds/],
    [{ ...valid, suspendedRetrySeconds: 1.5 }, /suspendedRetrySeconds/],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => parseConfig(input),
      (e: unknown) => e instanceof ConfigError && message.test(e.message),
      String(message),
    );
  }
});
