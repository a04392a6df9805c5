import { describe, expect, it } from "vitest";
import { tokenCount } from "../billing/estimate.ts";
import { canaryRecommendation } from "../ops/canaries.ts";
import { canaryApplies, canaryCode, canaryProblems, canaryPrompt, canaryRequest, promptTokenBand, readCanaryAnswer, sameModel } from "./canary_check.ts";

const CODE = "K7Q2M9XT4P";

function openAiAnswer(model: string, content: string, promptTokens: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      model,
      choices: [{ index: 0, message: { role: "assistant", content } }],
      usage: { prompt_tokens: promptTokens, completion_tokens: 5 },
    }),
  );
}

describe("canary requests", () => {
  it("ask for a fresh code in a fixed text, counted by the hub's tokenizer", () => {
    const a = canaryCode();
    expect(a).toMatch(/^[A-Z2-9]{10}$/);
    expect(canaryCode()).not.toBe(a);
    const req = canaryRequest("openai", "gpt-4o-mini", CODE);
    expect(req.path).toBe("/v1/chat/completions");
    const body = JSON.parse(req.body.toString()) as { model: string; max_completion_tokens: number; messages: { content: string }[] };
    expect(body.model).toBe("gpt-4o-mini");
    expect(body.max_completion_tokens).toBe(32);
    expect(body.messages[0]!.content).toBe(canaryPrompt(CODE));
    expect(req.expectedPromptTokens).toBe(tokenCount(canaryPrompt(CODE)));
    const claude = canaryRequest("anthropic", "claude-haiku-4-5", CODE);
    expect(claude.path).toBe("/v1/messages");
    expect(claude.headers).toContainEqual(["anthropic-version", "2023-06-01"]);
    // A model that reasons unseen gets room to answer after reasoning.
    expect(JSON.parse(canaryRequest("azure", "o3-mini", CODE).body.toString())).toMatchObject({ max_completion_tokens: 1024 });
  });

  it("go to chat models only", () => {
    expect(canaryApplies("gpt-4o")).toBe(true);
    expect(canaryApplies("claude-sonnet-4-5")).toBe(true);
    for (const m of ["text-embedding-3-small", "whisper-1", "tts-1", "dall-e-3", "gpt-image-1", "omni-moderation-latest"]) expect(canaryApplies(m)).toBe(false);
  });
});

describe("canary checks", () => {
  const expected = tokenCount(canaryPrompt(CODE));

  it("a dated snapshot or a -latest alias's snapshot is the same model; another model is not", () => {
    expect(sameModel("gpt-4o-mini", "gpt-4o-mini")).toBe(true);
    expect(sameModel("gpt-4o-mini", "gpt-4o-mini-2024-07-18")).toBe(true);
    expect(sameModel("claude-haiku-4-5", "claude-haiku-4-5-20251001")).toBe(true);
    expect(sameModel("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022")).toBe(true);
    expect(sameModel("gpt-4o", "gpt-4o-mini")).toBe(false);
    expect(sameModel("gpt-4o", "gpt-4o-mini-2024-07-18")).toBe(false);
    expect(sameModel("claude-sonnet-4-5", "claude-haiku-4-5")).toBe(false);
  });

  it("an honest answer has no problem", () => {
    const answer = readCanaryAnswer("openai", openAiAnswer("gpt-4o-mini-2024-07-18", CODE, expected + 8))!;
    expect(canaryProblems("gpt-4o-mini", CODE, expected, answer)).toEqual([]);
  });

  it("each substitution shows as its own problem", () => {
    const other = readCanaryAnswer("openai", openAiAnswer("gpt-3.5-turbo", CODE, expected + 8))!;
    expect(canaryProblems("gpt-4o", CODE, expected, other)).toEqual(["model_differs"]);
    const wrong = readCanaryAnswer("openai", openAiAnswer("gpt-4o", "I cannot help with that", expected + 8))!;
    expect(canaryProblems("gpt-4o", CODE, expected, wrong)).toEqual(["wrong_answer"]);
    const band = promptTokenBand("gpt-4o", expected)!;
    expect(band.min).toBe(expected);
    const over = readCanaryAnswer("openai", openAiAnswer("gpt-4o", CODE, band.max + 1))!;
    expect(canaryProblems("gpt-4o", CODE, expected, over)).toEqual(["prompt_tokens_out_of_range"]);
    const under = readCanaryAnswer("openai", openAiAnswer("gpt-4o", CODE, band.min - 1))!;
    expect(canaryProblems("gpt-4o", CODE, expected, under)).toEqual(["prompt_tokens_out_of_range"]);
    // At the band's edges: in.
    for (const n of [band.min, band.max])
      expect(canaryProblems("gpt-4o", CODE, expected, readCanaryAnswer("openai", openAiAnswer("gpt-4o", CODE, n))!)).toEqual([]);
  });

  it("reads Anthropic answers, cached input counting as prompt", () => {
    const body = Buffer.from(
      JSON.stringify({
        model: "claude-haiku-4-5-20251001",
        content: [{ type: "text", text: CODE }],
        usage: { input_tokens: 20, cache_read_input_tokens: 10, cache_creation_input_tokens: 5, output_tokens: 7 },
      }),
    );
    expect(readCanaryAnswer("anthropic", body)).toEqual({ model: "claude-haiku-4-5-20251001", text: CODE, promptTokens: 35, completionTokens: 7 });
    expect(readCanaryAnswer("anthropic", Buffer.from("not json"))).toBeNull();
  });

  it("a model of no known family is not checked on counts", () => {
    expect(promptTokenBand("mistral-large", expected)).toBeNull();
    const answer = readCanaryAnswer("openai", openAiAnswer("mistral-large", CODE, expected * 10))!;
    expect(canaryProblems("mistral-large", CODE, expected, answer)).toEqual([]);
  });
});

describe("the canary tier recommendation", () => {
  it("follows the documented rule", () => {
    expect(canaryRecommendation({ total: 3, substitutions: 0, errorRateBps: 0, ttfbP50Ms: 100 })).toBeNull();
    expect(canaryRecommendation({ total: 10, substitutions: 1, errorRateBps: 0, ttfbP50Ms: 100 })).toBe("review");
    expect(canaryRecommendation({ total: 50, substitutions: 0, errorRateBps: 200, ttfbP50Ms: 3_000 })).toBe("S");
    expect(canaryRecommendation({ total: 50, substitutions: 0, errorRateBps: 200, ttfbP50Ms: 3_001 })).toBe("A");
    expect(canaryRecommendation({ total: 50, substitutions: 0, errorRateBps: 1_000, ttfbP50Ms: 100 })).toBe("A");
    expect(canaryRecommendation({ total: 50, substitutions: 0, errorRateBps: 1_001, ttfbP50Ms: 100 })).toBe("discount");
    expect(canaryRecommendation({ total: 4, substitutions: 0, errorRateBps: 10_000, ttfbP50Ms: null })).toBe("discount");
  });
});
