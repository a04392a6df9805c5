import { describe, expect, it } from "vitest";
import { emptyFields, type BodyFields } from "@wellspring/protocol";
import { RequestTokenEstimator } from "./estimate.ts";
import { checkUsage, usageTolerance, type HubCount } from "./usage_check.ts";
import { createUsageTap } from "./usage_tap.ts";
import { IMAGE_PART_TOKENS_MAX, modelLimits } from "./worst_case.ts";

const hub = (h: Partial<HubCount>): HubCount => ({ inputTokens: 100, unmeasuredInputBytes: 0, inputNumbers: 0, outputTokens: 50, thinkingSeen: false, ...h });
const fields = (f: Partial<BodyFields> = {}): BodyFields => ({ ...emptyFields(), ...f });
const check = (
  model: string,
  reported: { inputTokens: number; outputTokens: number; cachedInputTokens?: number; reasoningTokens?: number },
  h: Partial<HubCount>,
  f: Partial<BodyFields> = {},
) => checkUsage({ model, reported: { cachedInputTokens: 0, ...reported }, hub: hub(h), fields: fields(f), limits: modelLimits(model, 32_768) });

describe("usage the hub can check", () => {
  it("charges a report within the family's tolerance exactly", () => {
    // o200k: 1.25 × 100 + 128 = 253 input, 1.25 × 50 + 32 = 95 output.
    const r = check("gpt-4o-mini", { inputTokens: 253, outputTokens: 95 }, {});
    expect(r.divergence).toBeNull();
    expect(r.usage).toEqual({ inputTokens: 253, outputTokens: 95, cachedInputTokens: 0 });
  });

  it("caps a report one token beyond the tolerance, on each side, and keeps the evidence in counts", () => {
    const r = check("gpt-4o-mini", { inputTokens: 1_000_000, outputTokens: 96, cachedInputTokens: 999_000 }, {});
    expect(r.usage).toEqual({ inputTokens: 253, outputTokens: 95, cachedInputTokens: 253 });
    expect(r.divergence).toEqual({
      family: "openai_o200k",
      reported: { inputTokens: 1_000_000, outputTokens: 96, cachedInputTokens: 999_000, reasoningTokens: 0 },
      counted: { inputTokens: 100, outputTokens: 50, unmeasuredInputBytes: 0 },
      allowed: { inputTokens: 253, outputTokens: 95 },
      charged: { inputTokens: 253, outputTokens: 95, cachedInputTokens: 253 },
    });
  });

  it("allows hidden reasoning up to the request's output cap on reasoning models only", () => {
    const reasoning = { inputTokens: 100, outputTokens: 5_050, reasoningTokens: 5_000 };
    expect(check("o4-mini", reasoning, {}, { maxOutputTokens: 8_000 }).divergence).toBeNull();
    // The cap bounds it: a report of more reasoning than the request allowed is capped.
    expect(check("o4-mini", reasoning, {}, { maxOutputTokens: 1_000 }).usage.outputTokens).toBe(95 + 1_000);
    // gpt-4o does not reason unseen: its reasoning_tokens buy nothing.
    expect(check("gpt-4o", reasoning, {}, { maxOutputTokens: 8_000 }).usage.outputTokens).toBe(95);
  });

  it("allows Claude's thinking up to the cap only when the response carried a thinking block", () => {
    const r = { inputTokens: 100, outputTokens: 3_000 };
    expect(check("claude-sonnet-4-5", r, { thinkingSeen: true }, { maxOutputTokens: 4_000 }).divergence).toBeNull();
    expect(check("claude-sonnet-4-5", r, { thinkingSeen: false }, { maxOutputTokens: 4_000 }).usage.outputTokens).toBe(2 * 50 + 64);
  });

  it("counts images, binary bytes and token-id arrays into the input allowance; no input check for referenced content", () => {
    expect(
      check("gpt-4o", { inputTokens: 253 + 2 * IMAGE_PART_TOKENS_MAX + 4_000, outputTokens: 1 }, { unmeasuredInputBytes: 4_000 }, { imageParts: 2 }).divergence,
    ).toBeNull();
    expect(check("text-embedding-3-small", { inputTokens: 5_000 + 150 + 128, outputTokens: 0 }, { inputNumbers: 5_000 }).divergence).toBeNull();
    expect(check("gpt-4o", { inputTokens: 90_000, outputTokens: 1 }, {}, { references: true }).divergence).toBeNull();
  });

  it("checks nothing the hub did not count", () => {
    expect(check("gpt-4o", { inputTokens: 1_000_000, outputTokens: 1_000_000 }, { inputTokens: null, outputTokens: null }).divergence).toBeNull();
  });

  it("documents a tolerance for every family", () => {
    expect(usageTolerance("gpt-4.1-mini").family).toBe("openai_o200k");
    expect(usageTolerance("gpt-5").hiddenReasoning).toBe("reported");
    expect(usageTolerance("gpt-3.5-turbo-instruct").family).toBe("openai_cl100k");
    expect(usageTolerance("claude-haiku-4-5").family).toBe("anthropic");
    expect(usageTolerance("llama-3").family).toBe("other");
  });
});

describe("what the hub counts", () => {
  const enc = (s: string) => new TextEncoder().encode(s);

  it("an honest chat body's tokens, with a mock provider's bytes ÷ 4 inside the tolerance", () => {
    const body = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello, how are you today? 你好，今天怎么样？" }] });
    const e = new RequestTokenEstimator();
    e.push(enc(body));
    const r = check("gpt-4o-mini", { inputTokens: Math.ceil(body.length / 4), outputTokens: 1 }, { inputTokens: e.total() });
    expect(r.divergence).toBeNull();
  });

  it("skipped data URLs and base64 runs are counted as unmeasured bytes; numbers outside strings are counted", () => {
    const e = new RequestTokenEstimator();
    const b64 = "QUJD".repeat(200);
    e.push(enc(JSON.stringify({ a: `data:image/png;base64,${b64}`, b: b64, c: [1, 22, -3.5e2, true, null] })));
    e.total();
    expect(e.unmeasuredBytes()).toBe("image/png;base64,".length + b64.length + b64.length);
    expect(e.numbers()).toBe(3);
  });

  it("a JSON response's text is counted when asked, and a Claude thinking block is seen", () => {
    const tap = createUsageTap("application/json", { countOutput: true });
    const body = enc(
      JSON.stringify({
        content: [
          { type: "thinking", thinking: "hmm" },
          { type: "text", text: "The answer is 42." },
        ],
        usage: { input_tokens: 3, output_tokens: 9 },
      }),
    );
    tap.push(body.subarray(0, 20));
    tap.push(body.subarray(20));
    expect(tap.countedOutputTokens()).toBeGreaterThanOrEqual(9);
    expect(tap.thinkingSeen()).toBe(true);
    expect(createUsageTap("application/json").countedOutputTokens()).toBeNull();
    // Generated base64 (a gpt-image-1 image) counts by size, so an image's reported tokens are never capped.
    const image = createUsageTap("application/json", { countOutput: true });
    image.push(enc(JSON.stringify({ data: [{ b64_json: "QUJD".repeat(1_000) }] })));
    expect(image.countedOutputTokens()).toBeGreaterThanOrEqual(2_000);
  });

  it("a stream's delivered deltas are counted, and reasoning_tokens are read from the usage", () => {
    const tap = createUsageTap("text/event-stream");
    const chunk = (o: unknown) => enc(`data: ${JSON.stringify(o)}\n\n`);
    tap.push(chunk({ choices: [{ index: 0, delta: { content: "one two three four" } }] }));
    tap.push(chunk({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 40, completion_tokens_details: { reasoning_tokens: 30 } } }));
    expect(tap.countedOutputTokens()).toBe(4);
    expect(tap.result()).toEqual({ inputTokens: 5, outputTokens: 40, cachedInputTokens: 0, reasoningTokens: 30 });
    expect(tap.thinkingSeen()).toBe(false);
  });
});
