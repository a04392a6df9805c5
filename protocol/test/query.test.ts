import { describe, expect, it } from "vitest";
import { forwardedQuery } from "../src/query.ts";

describe("forwarded query parameters", () => {
  it("keeps Anthropic's beta=true and nothing else", () => {
    expect(forwardedQuery("anthropic", "?beta=true")).toBe("?beta=true");
    expect(forwardedQuery("anthropic", "?x=1&beta=true&beta=true&api-version=2024")).toBe("?beta=true");
    expect(forwardedQuery("anthropic", "?beta=false")).toBe("");
    expect(forwardedQuery("anthropic", "?Beta=true")).toBe("");
    expect(forwardedQuery("anthropic", "")).toBe("");
  });

  it("drops every parameter on the OpenAI family (the agent owns Azure's api-version)", () => {
    expect(forwardedQuery("openai", "?api-version=2024-10-21")).toBe("");
    expect(forwardedQuery("openai", "?beta=true")).toBe("");
    expect(forwardedQuery("openai", "?")).toBe("");
  });
});
