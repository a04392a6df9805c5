/**
 * The tap reads the usage the provider reported from real wire bytes (produced by the mock provider over
 * HTTP), however the bytes are chunked.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { createUsageTap, LINE_BYTES_MAX, type Usage } from "./usage_tap.ts";

let mock: MockProvider;
beforeAll(async () => {
  mock = await startMockProvider();
});
afterAll(async () => {
  await mock.close();
});

async function wire(path: string, body: unknown): Promise<{ bytes: Uint8Array; contentType: string }> {
  const res = await fetch(`${mock.origin}${path}`, {
    method: "POST",
    headers: { authorization: "Bearer k", "x-api-key": "k", "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { bytes: new Uint8Array(await res.arrayBuffer()), contentType: res.headers.get("content-type") ?? "" };
}

function tapInChunks(w: { bytes: Uint8Array; contentType: string }, cuts: number[]): Usage | null {
  const tap = createUsageTap(w.contentType);
  const points = [...new Set(cuts.map((c) => c % (w.bytes.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  for (const p of [...points, w.bytes.length]) {
    tap.push(w.bytes.subarray(at, p));
    at = p;
  }
  return tap.result();
}

const cases: [string, string, (prompt: string) => unknown, (text: string) => Usage][] = [
  [
    "OpenAI chat SSE with include_usage",
    "/v1/chat/completions",
    (p) => ({ model: "gpt-4o-mini", stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: p }] }),
    (t) => usageOf(t, "prompt_tokens", "completion_tokens"),
  ],
  [
    "OpenAI chat JSON",
    "/v1/chat/completions",
    (p) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content: p }] }),
    (t) => usageOf(t, "prompt_tokens", "completion_tokens"),
  ],
  ["Responses API SSE", "/v1/responses", (p) => ({ model: "gpt-4o-mini", stream: true, input: p }), (t) => usageOf(t, "input_tokens", "output_tokens")],
  ["Responses API JSON", "/v1/responses", (p) => ({ model: "gpt-4o-mini", input: p }), (t) => usageOf(t, "input_tokens", "output_tokens")],
  [
    "embeddings JSON",
    "/v1/embeddings",
    (p) => ({ model: "text-embedding-3-small", input: [p, p] }),
    (t) => ({ ...usageOf(t, "prompt_tokens", "completion_tokens"), outputTokens: 0 }),
  ],
  [
    "Anthropic messages SSE",
    "/v1/messages",
    (p) => ({ model: "claude-haiku-4-5", stream: true, max_tokens: 50, messages: [{ role: "user", content: p }] }),
    (t) => usageOf(t, "input_tokens", "output_tokens"),
  ],
  [
    "Anthropic messages JSON",
    "/v1/messages",
    (p) => ({ model: "claude-haiku-4-5", max_tokens: 50, messages: [{ role: "user", content: p }] }),
    (t) => usageOf(t, "input_tokens", "output_tokens"),
  ],
];

/** The expected usage, read independently: the last occurrence of each field in the raw text. */
function usageOf(text: string, inKey: string, outKey: string): Usage {
  const last = (k: string) => {
    const all = [...text.matchAll(new RegExp(`"${k}":(\\d+)`, "g"))];
    return all.length ? Number(all.at(-1)![1]) : 0;
  };
  return { inputTokens: last(inKey), outputTokens: last(outKey), cachedInputTokens: 0 };
}

describe("usage tap", () => {
  for (const [name, path, body, expected] of cases) {
    it(`${name}: the reported usage, whatever the chunking`, async () => {
      const w = await wire(path, body("hello [mock chunks=9 bytes=300000]"));
      const want = expected(new TextDecoder().decode(w.bytes));
      expect(want.inputTokens).toBeGreaterThan(0);
      fc.assert(
        fc.property(fc.array(fc.nat(), { maxLength: 12 }), (cuts) => {
          expect(tapInChunks(w, cuts)).toEqual(want);
        }),
        { numRuns: 60 },
      );
    });
  }

  it("reports nothing when the stream has no usage (not asked for, or cut before the end)", async () => {
    const noUsage = await wire("/v1/chat/completions", { model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "x [mock chunks=4]" }] });
    expect(tapInChunks(noUsage, [])).toBeNull();
    const full = await wire("/v1/messages", {
      model: "claude-haiku-4-5",
      stream: true,
      max_tokens: 5,
      messages: [{ role: "user", content: "x [mock chunks=4]" }],
    });
    const cut = { ...full, bytes: full.bytes.subarray(0, new TextDecoder().decode(full.bytes).indexOf("event: message_delta")) };
    expect(tapInChunks(cut, [7, 100])).toBeNull();
  });

  it("never buffers a long line and never throws on arbitrary bytes", () => {
    const tap = createUsageTap("text/event-stream");
    tap.push(new TextEncoder().encode("data: " + "x".repeat(LINE_BYTES_MAX * 2)));
    tap.push(new TextEncoder().encode('\ndata: {"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n'));
    expect(tap.result()).toEqual({ inputTokens: 3, outputTokens: 4, cachedInputTokens: 0 });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.boolean(), (bytes, sse) => {
        const t = createUsageTap(sse ? "text/event-stream" : "application/json");
        t.push(bytes);
        t.result();
      }),
      { numRuns: 1000 },
    );
  });

  it("counts Anthropic prompt-cache reads as cached input", () => {
    const tap = createUsageTap("text/event-stream");
    tap.push(
      new TextEncoder().encode(
        'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":90,"cache_creation_input_tokens":0,"output_tokens":1}}}\n\n',
      ),
    );
    tap.push(new TextEncoder().encode('event: message_delta\ndata: {"type":"message_delta","delta":{},"usage":{"output_tokens":7}}\n\n'));
    expect(tap.result()).toEqual({ inputTokens: 100, outputTokens: 7, cachedInputTokens: 90 });
  });

  it("counts the images of an images response however it is chunked, and reads audio seconds", () => {
    const b64 = "iVBORw0KGgo".repeat(30_000);
    const body = JSON.stringify(
      { created: 1, data: [{ b64_json: b64, revised_prompt: 'a "url": not an image' }, { b64_json: b64 }, { url: "https://files.example/x.png" }] },
      null,
      2,
    );
    const bytes = new TextEncoder().encode(body);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 30 }), (cuts) => {
        const tap = createUsageTap("application/json", { countImages: true });
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        let at = 0;
        for (const p of [...points, bytes.length]) {
          tap.push(bytes.subarray(at, p));
          at = p;
        }
        expect(tap.images()).toBe(3);
      }),
      { numRuns: 200 },
    );
    const audio = createUsageTap("application/json");
    audio.push(new TextEncoder().encode('{"text":"hello","usage":{"type":"duration","seconds":3.2}}'));
    expect(audio.result()).toEqual({ inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, audioSeconds: 4 });
  });
});
