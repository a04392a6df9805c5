import { describe, expect, it } from "vitest";
import { MESSAGE_BATCH_REQUESTS_MAX, MessageBatchBodyScanner } from "@wellspring/protocol";
import { MessageBatchWorstCase } from "./message_batch_body.ts";
import { BatchResultsTally, RESULT_LINE_BYTES_MAX } from "./message_batch_results.ts";
import { IMAGE_PART_TOKENS_MAX, modelLimits } from "./worst_case.ts";

const MODEL = "claude-haiku-4-5";
const limitsOf = (m: string) => modelLimits(m, 4096);
const enc = new TextEncoder();

function params(maxTokens: number, text = "hi", model = MODEL): Record<string, unknown> {
  return { model, max_tokens: maxTokens, messages: [{ role: "user", content: text }] };
}

/** Scans `body` cut into chunks of `chunkBytes` (1 = byte by byte): the protocol's scanner, with the hold's worst case. */
function scan(body: string, chunkBytes = 1 << 20): MessageBatchBodyScanner & { worst: { inputTokens: number; outputTokens: number } } {
  const w = new MessageBatchWorstCase(limitsOf);
  const s = w.scanner.batch;
  const bytes = enc.encode(body);
  for (let i = 0; i < bytes.length && s.problem === null; i += chunkBytes) s.push(bytes.subarray(i, i + chunkBytes));
  s.end();
  return Object.assign(s, { worst: w.worst });
}

describe("MessageBatchBodyScanner (protocol) and the batch's worst case", () => {
  it("sums every request's worst case: params bytes in, max_tokens out", () => {
    const p1 = params(100, "hello");
    const p2 = params(250, "x".repeat(1000));
    const body = JSON.stringify({
      requests: [
        { custom_id: "a", params: p1 },
        { custom_id: "b-2_C", params: p2 },
      ],
    });
    for (const chunk of [1, 3, 7, 64, 1 << 20]) {
      const s = scan(body, chunk);
      expect(s.problem, `chunk ${chunk}`).toBeNull();
      expect(s.complete).toBe(true);
      expect(s.requests).toBe(2);
      expect(s.model).toBe(MODEL);
      expect(s.worst).toEqual({ inputTokens: JSON.stringify(p1).length + JSON.stringify(p2).length, outputTokens: 350 });
    }
  });

  it("adds an allowance per inline image and a whole context window for content it cannot see", () => {
    const image = {
      model: MODEL,
      max_tokens: 10,
      messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } }] }],
    };
    const remote = {
      model: MODEL,
      max_tokens: 10,
      messages: [{ role: "user", content: [{ type: "image", source: { type: "url", url: "https://example.com/a.png" } }] }],
    };
    const s = scan(JSON.stringify({ requests: [{ custom_id: "i", params: image }] }));
    expect(s.worst.inputTokens).toBe(JSON.stringify(image).length + IMAGE_PART_TOKENS_MAX);
    const r = scan(JSON.stringify({ requests: [{ custom_id: "r", params: remote }] }));
    expect(r.worst.inputTokens).toBe(limitsOf(MODEL).contextTokens);
  });

  it("reads escapes and strings holding braces without losing the params object's end", () => {
    const p = params(5, 'a "quoted" {brace} [bracket] \\ back \u00e9 \n');
    const body = JSON.stringify({ requests: [{ params: p, custom_id: "z" }] });
    const s = scan(body, 1);
    expect(s.problem).toBeNull();
    expect(s.worst.inputTokens).toBe(enc.encode(JSON.stringify(p)).length);
  });

  it.each([
    ["a repeated `requests` key", `{"requests":[{"custom_id":"a","params":${JSON.stringify(params(1))}}],"requests":[]}`, /repeats the field `requests`/],
    [
      "a repeated custom_id",
      JSON.stringify({
        requests: [
          { custom_id: "a", params: params(1) },
          { custom_id: "a", params: params(1) },
        ],
      }),
      /custom_id 'a' is used by an earlier request/,
    ],
    [
      "a repeated params key",
      `{"requests":[{"custom_id":"a","params":${JSON.stringify(params(1))},"params":${JSON.stringify(params(9))}}]}`,
      /repeats the field `params` in requests\[0\]/,
    ],
    [
      "a repeated key inside params",
      `{"requests":[{"custom_id":"a","params":{"model":"${MODEL}","max_tokens":1,"max_tokens":99999,"messages":[]}}]}`,
      /repeats the field `max_tokens`/,
    ],
    ["a missing max_tokens", JSON.stringify({ requests: [{ custom_id: "a", params: { model: MODEL, messages: [] } }] }), /max_tokens: Field required/],
    ["a missing model", JSON.stringify({ requests: [{ custom_id: "a", params: { max_tokens: 3, messages: [] } }] }), /model: Field required/],
    ["a missing custom_id", JSON.stringify({ requests: [{ params: params(1) }] }), /custom_id: Field required/],
    ["a missing params", JSON.stringify({ requests: [{ custom_id: "a" }] }), /params: Field required/],
    ["a bad custom_id", JSON.stringify({ requests: [{ custom_id: "a b", params: params(1) }] }), /custom_id must be 1 to 64/],
    ["an over-long custom_id", JSON.stringify({ requests: [{ custom_id: "a".repeat(65), params: params(1) }] }), /custom_id must be 1 to 64/],
    [
      "two models",
      JSON.stringify({
        requests: [
          { custom_id: "a", params: params(1) },
          { custom_id: "b", params: params(1, "x", "claude-sonnet-4-5") },
        ],
      }),
      /one model per batch/,
    ],
    ["an extra top-level field", JSON.stringify({ requests: [{ custom_id: "a", params: params(1) }], model: MODEL }), /model: Extra inputs are not permitted/],
    ["an extra request field", JSON.stringify({ requests: [{ custom_id: "a", params: params(1), note: 1 }] }), /requests\[0\]\.note: Extra inputs/],
    ["stream in a request", JSON.stringify({ requests: [{ custom_id: "a", params: { ...params(1), stream: true } }] }), /streaming is not supported/],
    [
      "a billed server tool",
      JSON.stringify({ requests: [{ custom_id: "a", params: { ...params(1), tools: [{ type: "web_search_20250305", name: "web_search" }] } }] }),
      /web_search_20250305/,
    ],
    ["no requests", JSON.stringify({ requests: [] }), /at least one request/],
    ["an empty object", "{}", /at least one request/],
    ["an empty body", "", /empty/],
    ["a number for requests", '{"requests": 5}', /must be an array/],
    ["a string request", '{"requests": ["a"]}', /must be an object/],
    ["params not an object", JSON.stringify({ requests: [{ custom_id: "a", params: "x" }] }), /params must be an object/],
    ["a cut body", JSON.stringify({ requests: [{ custom_id: "a", params: params(1) }] }).slice(0, -3), /ends before its closing brace|not valid JSON/],
    ["trailing data", JSON.stringify({ requests: [{ custom_id: "a", params: params(1) }] }) + "{}", /data after its closing brace/],
    ["broken params JSON", `{"requests":[{"custom_id":"a","params":{"model":"${MODEL}","max_tokens":1,,}}]}`, /not valid JSON/],
    ["a trailing comma", `{"requests":[{"custom_id":"a","params":${JSON.stringify(params(1))}},]}`, /not valid JSON/],
  ])("refuses %s", (_what, body, message) => {
    for (const chunk of [1, 5, 1 << 20]) {
      const s = scan(body, chunk);
      expect(s.complete, `chunk ${chunk}`).toBe(false);
      expect(s.problem, `chunk ${chunk}`).toMatch(message);
    }
  });

  it("finds a problem before the end of the body: a duplicated custom_id is refused in the chunk that names it", () => {
    const s = new MessageBatchBodyScanner();
    s.push(enc.encode(JSON.stringify({ requests: [{ custom_id: "dup", params: params(1) }] }).slice(0, -2)));
    expect(s.problem).toBeNull();
    s.push(enc.encode(`,{"custom_id":"dup"`));
    expect(s.problem).toMatch(/custom_id 'dup'/);
  });

  it("refuses a batch of more requests than the limit without holding them", () => {
    const s = new MessageBatchBodyScanner();
    const one = (i: number) => enc.encode(`${i === 0 ? "" : ","}{"custom_id":"r${i}","params":{"model":"${MODEL}","max_tokens":1,"messages":[]}}`);
    s.push(enc.encode('{"requests":['));
    for (let i = 0; i <= MESSAGE_BATCH_REQUESTS_MAX && s.problem === null; i++) s.push(one(i));
    expect(s.problem).toMatch(new RegExp(`at most ${MESSAGE_BATCH_REQUESTS_MAX} requests`));
    expect(s.requests).toBe(MESSAGE_BATCH_REQUESTS_MAX);
  });

  it("reads a huge request body in bounded chunks (50 MB of params text)", () => {
    const w = new MessageBatchWorstCase(limitsOf);
    const s = w.scanner.batch;
    s.push(enc.encode(`{"requests":[{"custom_id":"big","params":{"model":"${MODEL}","max_tokens":7,"messages":[{"role":"user","content":"`));
    const block = enc.encode("y".repeat(1 << 20));
    for (let i = 0; i < 50; i++) s.push(block);
    s.push(enc.encode('"}]}}]}'));
    s.end();
    expect(s.problem).toBeNull();
    expect(w.worst.outputTokens).toBe(7);
    // A known model's input is bounded by its context window too.
    expect(w.worst.inputTokens).toBe(limitsOf(MODEL).contextTokens);
  });

  it("as the request path's scanner: settled with the model once the first params are read", () => {
    const w = new MessageBatchWorstCase(limitsOf);
    const s = w.scanner;
    const body = JSON.stringify({
      requests: [
        { custom_id: "a", params: params(1) },
        { custom_id: "b", params: params(2) },
      ],
    });
    const cut = body.indexOf('"custom_id":"b"');
    s.push(enc.encode(body.slice(0, 30)));
    expect(s.settled).toBe(false);
    s.push(enc.encode(body.slice(30, cut)));
    expect(s.settled).toBe(true);
    expect(s.fields.model).toBe(MODEL);
    s.push(enc.encode(body.slice(cut)));
    s.end();
    expect(s.complete).toBe(true);
    expect(w.usage()).toMatchObject({ outputTokens: 3 });
  });
});

describe("BatchResultsTally", () => {
  const succeeded = (id: string, u: Record<string, number>) =>
    JSON.stringify({
      custom_id: id,
      result: { type: "succeeded", message: { id: "msg_1", type: "message", role: "assistant", content: [{ type: "text", text: "ok\n{}" }], usage: u } },
    });

  it("sums succeeded messages' usage (cache writes and reads are input) and counts the rest, across any chunking", () => {
    const file =
      [
        succeeded("a", { input_tokens: 10, output_tokens: 5 }),
        succeeded("b", { input_tokens: 3, output_tokens: 7, cache_creation_input_tokens: 20, cache_read_input_tokens: 100 }),
        JSON.stringify({ custom_id: "c", result: { type: "errored", error: { type: "error", error: { type: "invalid_request_error", message: "bad" } } } }),
        JSON.stringify({ custom_id: "d", result: { type: "canceled" } }),
        JSON.stringify({ custom_id: "e", result: { type: "expired" } }),
        "not json",
      ].join("\n") + "\n";
    const bytes = enc.encode(file);
    for (const chunk of [1, 2, 13, bytes.length]) {
      const t = new BatchResultsTally();
      for (let i = 0; i < bytes.length; i += chunk) t.push(bytes.subarray(i, i + chunk));
      t.end();
      expect(t.usage).toEqual({ inputTokens: 133, outputTokens: 12, cachedInputTokens: 100 });
      expect(t.counts).toEqual({ succeeded: 2, errored: 1, canceled: 1, expired: 1, unreadable: 1 });
    }
  });

  it("reads a last line without a newline, and counts an over-long line unreadable without holding it", () => {
    const t = new BatchResultsTally();
    t.push(enc.encode(`{"custom_id":"x","result":{"type":"succeeded","message":{"content":"`));
    const block = new Uint8Array(1 << 20).fill(0x61);
    for (let i = 0; i <= RESULT_LINE_BYTES_MAX >> 20; i++) t.push(block);
    t.push(enc.encode(`"}}}\n${succeeded("y", { input_tokens: 1, output_tokens: 2 })}`));
    t.end();
    expect(t.counts.unreadable).toBe(1);
    expect(t.counts.succeeded).toBe(1);
    expect(t.usage.outputTokens).toBe(2);
  });
});
