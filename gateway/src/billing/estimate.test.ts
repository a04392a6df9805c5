/**
 * Token estimates for charges without reported usage: the request estimate counts exactly the text of the
 * body's JSON strings whatever the chunking (escapes decoded, base64 skipped), the output estimate counts
 * exactly the delta text of the events, and the charge rules pick the right basis for each end cause.
 */
import fc from "fast-check";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import { describe, expect, it } from "vitest";
import { chargeBasis, type RequestOutcome } from "./charge_rules.ts";
import { deltaText, RequestTokenEstimator, StreamedTokenCounter, TEXT_BATCH_CHARS, tokenLowerBound } from "./estimate.ts";
import { documentedInputEstimate } from "./testing/estimate_spec.ts";

const expected = documentedInputEstimate;

function estimateInChunks(bytes: Uint8Array, cuts: number[]): number {
  const e = new RequestTokenEstimator();
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  for (const p of [...points, bytes.length]) {
    e.push(bytes.subarray(at, p));
    at = p;
  }
  return e.total();
}

const text = fc.oneof(
  fc.string({ unit: fc.constantFrom("a", "b", " ", "é", "\n", '"', "\\", "漢", "😀", "\t", "x", "1", "/"), maxLength: 60 }),
  // Long runs (base64-like and not), and strings that start like a data URL.
  fc
    .tuple(
      fc.constantFrom("", "data:", "dat", "x "),
      fc.constantFrom("A", "b/", "é", "-", "zz"),
      fc.integer({ min: 100, max: 400 }),
      fc.constantFrom("", " tail", "\nmore"),
    )
    .map(([head, unit, times, tail]) => head + unit.repeat(times) + tail),
);

describe("RequestTokenEstimator", () => {
  it("counts the text of every JSON string, however the body is chunked", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ role: fc.constantFrom("user", "system"), content: text }), { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (messages, cuts) => {
          const body = { model: "gpt-4o-mini", stream: true, max_tokens: 12, messages };
          const bytes = new TextEncoder().encode(JSON.stringify(body));
          expect(estimateInChunks(bytes, cuts)).toBe(expected(body));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("skips data URLs and base64 payloads, counts other long runs by size, and stays fast on them", () => {
    const image = "iVBORw0KGgoAAAANSUhEUg".repeat(10_000);
    const body = {
      model: "gpt-4o",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What is in this picture?" },
            { type: "image_url", image_url: { url: `data:image/png;base64,${image}` } },
            { type: "image", source: { type: "base64", media_type: "image/png", data: image } },
            { type: "text", text: `a hash ${"0a1b2c3d".repeat(64)}: and a run ${"p.".repeat(2_000_000)} end` },
          ],
        },
      ],
    };
    const bytes = new TextEncoder().encode(JSON.stringify(body));
    const started = performance.now();
    const n = estimateInChunks(bytes, [10, 500, 70_000, 150_000, 2_000_000]);
    const ms = performance.now() - started;
    expect(n).toBe(expected(body));
    // The 4 MB run of "p." counts 1 token per 4 bytes; the images count nothing.
    expect(n - 1_000_000).toBeGreaterThan(0);
    expect(n - 1_000_000).toBeLessThan(400);
    expect(ms).toBeLessThan(3_000); // linear: ~4.5 MB in well under a second on this machine
  });

  it("counts long text across batch boundaries like one piece", () => {
    const long = "The quick brown fox jumps over the lazy dog. ".repeat(Math.ceil((TEXT_BATCH_CHARS * 3) / 45));
    const body = { messages: [{ role: "user", content: long }] };
    const n = estimateInChunks(new TextEncoder().encode(JSON.stringify(body)), [1000, 65_000, 100_000]);
    // Batches split the text at arbitrary points, which may change a token or two per boundary.
    expect(Math.abs(n - expected(body))).toBeLessThanOrEqual(4);
  });
});

describe("StreamedTokenCounter and deltaText", () => {
  it("counts exactly the delta text of OpenAI, Responses and Anthropic events", () => {
    const events = [
      { choices: [{ index: 0, delta: { role: "assistant", content: "Hello" } }] },
      { choices: [{ index: 0, delta: { content: " world" } }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] } }] },
      { type: "response.output_text.delta", delta: " and more" },
      { type: "response.completed", response: { output: [{ content: [{ text: "NOT COUNTED" }] }] } },
      { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: " from Claude" } },
      { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: '{"q": 1}' } },
      { type: "message_delta", usage: { output_tokens: 3 } },
    ];
    const counter = new StreamedTokenCounter();
    for (const e of events) counter.line(new TextEncoder().encode(` ${JSON.stringify(e)}`));
    counter.line(new TextEncoder().encode(" [DONE]"));
    const joined = events.map((e) => deltaText(e)).join("");
    expect(joined).toBe('Hello world{"city": and more from Claude{"q": 1}');
    expect(counter.total()).toBe(countTokens(joined));
  });
});

describe("charge rules", () => {
  const base: RequestOutcome = {
    cause: "completed",
    status: 200,
    responded: true,
    dispatched: true,
    reported: null,
    reportedInput: null,
    deliveredOutputTokens: () => 17,
    estimatedInputTokens: () => 40,
    inputCharacters: 0,
    responseImages: () => 0,
  };
  const usage = (inputTokens: number, outputTokens: number) => ({ inputTokens, outputTokens, cachedInputTokens: 0 });

  it("picks the basis documented for each end cause", () => {
    const reported = usage(10, 5);
    expect(chargeBasis({ ...base, reported })).toEqual({ usage: reported, estimated: false, rule: "reported" });
    expect(chargeBasis({ ...base, cause: "client_cancelled", reported })).toMatchObject({ usage: reported, rule: "reported" });
    expect(chargeBasis(base)).toEqual({ usage: usage(40, 17), estimated: true, rule: "delivered" });
    expect(chargeBasis({ ...base, cause: "client_cancelled", responded: false })).toEqual({ usage: usage(40, 0), estimated: true, rule: "input_only" });
    expect(chargeBasis({ ...base, cause: "client_cancelled", responded: false, dispatched: false })).toMatchObject({ usage: usage(0, 0), rule: "failed" });
    expect(chargeBasis({ ...base, cause: "upstream_error", status: 500 })).toMatchObject({ usage: usage(0, 0), estimated: false, rule: "failed" });
    expect(chargeBasis({ ...base, cause: "upstream_timeout", responded: false, status: 0 })).toMatchObject({ usage: usage(0, 0), rule: "failed" });
    expect(chargeBasis({ ...base, cause: "upstream_timeout" })).toMatchObject({ usage: usage(40, 17), rule: "delivered" });
    expect(chargeBasis({ ...base, cause: "agent_lost", responded: false, status: 0 })).toMatchObject({ rule: "failed" });
    expect(chargeBasis({ ...base, cause: "client_cancelled", reportedInput: { inputTokens: 33, outputTokens: 1, cachedInputTokens: 8 } })).toEqual({
      usage: { inputTokens: 33, outputTokens: 17, cachedInputTokens: 8 },
      estimated: true,
      rule: "delivered",
    });
    expect(chargeBasis({ ...base, cause: "client_cancelled", deliveredOutputTokens: () => null })).toEqual({
      usage: usage(40, 0),
      estimated: true,
      rule: "input_only",
    });
    // Units: images counted in a completed response, speech characters once the provider has the input.
    expect(chargeBasis({ ...base, deliveredOutputTokens: () => null, responseImages: () => 2 })).toEqual({
      usage: { ...usage(0, 0), images: 2 },
      estimated: false,
      rule: "units",
    });
    expect(chargeBasis({ ...base, deliveredOutputTokens: () => null, inputCharacters: 120 })).toEqual({
      usage: { ...usage(0, 0), characters: 120 },
      estimated: false,
      rule: "units",
    });
    expect(chargeBasis({ ...base, cause: "client_cancelled", responded: false, inputCharacters: 120 })).toMatchObject({
      usage: { characters: 120 },
      rule: "input_only",
    });
    expect(chargeBasis({ ...base, status: 400, responseImages: () => 2 })).toMatchObject({ usage: usage(0, 0), rule: "failed" });
  });
});

describe("token lower bound (the usage check's fast path)", () => {
  const unit = fc.constantFrom(
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\u00a0",
    "\u3000",
    "a",
    "ab",
    "The",
    "'s",
    ".",
    "/",
    "\n/",
    "...",
    "1",
    "1234567",
    "é",
    "漢字",
    "😀",
    "-",
    "_",
    "\u000b",
    "\u0001",
    '"',
  );
  it("never exceeds the tokenizer's count, whatever the text", () => {
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 200 }), (parts) => {
        const text = parts.join("");
        const e = new RequestTokenEstimator();
        e.push(new TextEncoder().encode(JSON.stringify({ t: text })));
        expect(e.lowerBound()).toBeLessThanOrEqual(e.total());
        expect(tokenLowerBound(text)).toBeLessThanOrEqual(countTokens(text));
      }),
      { numRuns: 2_000 },
    );
  });

  it("is close to the count for prose, so honest reports skip the tokenizer", () => {
    const prose = "The quick brown fox jumps over the lazy dog, and then it rests under a tree. ".repeat(8);
    expect(tokenLowerBound(prose)).toBeGreaterThanOrEqual(Math.floor(countTokens(prose) * 0.8));
    // Streamed deltas: the bound of the delivered text, and total() still exact after it.
    const counter = new StreamedTokenCounter();
    counter.line(new TextEncoder().encode(JSON.stringify({ choices: [{ delta: { content: prose } }] })));
    expect(counter.lowerBound()).toBe(tokenLowerBound(prose));
    expect(counter.total()).toBe(countTokens(prose));
  });
});
