import { describe, expect, it } from "vitest";
import { forwardedQuery } from "../src/query.ts";

describe("forwarded query parameters", () => {
  it("keeps Anthropic's beta=true and nothing else", () => {
    expect(forwardedQuery("anthropic", "?beta=true", "/v1/messages")).toBe("?beta=true");
    expect(forwardedQuery("anthropic", "?x=1&beta=true&beta=true&api-version=2024", "/v1/messages")).toBe("?beta=true");
    expect(forwardedQuery("anthropic", "?beta=false", "/v1/messages")).toBe("");
    expect(forwardedQuery("anthropic", "?Beta=true", "/v1/messages")).toBe("");
    expect(forwardedQuery("anthropic", "", "/v1/messages")).toBe("");
  });

  it("drops every parameter on the OpenAI family (the agent owns Azure's api-version)", () => {
    expect(forwardedQuery("openai", "?api-version=2024-10-21", "/v1/responses")).toBe("");
    expect(forwardedQuery("openai", "?beta=true", "/v1/chat/completions")).toBe("");
    expect(forwardedQuery("openai", "?", "/v1/responses/resp_1/input_items")).toBe("");
  });

  it("pages a stored response's input items with free values only where the rule's pattern allows", () => {
    const items = "/v1/responses/resp_abc/input_items";
    expect(forwardedQuery("openai", "?before=msg_2&after=msg_9&limit=100&order=desc", items)).toBe("?limit=100&after=msg_9&before=msg_2&order=desc");
    expect(forwardedQuery("openai", "?limit=1&limit=50", items)).toBe("?limit=1");
    for (const bad of ["?limit=0", "?limit=101", "?limit=07", "?limit=+5", "?after=" + "a".repeat(201), "?after=a%26limit%3D5", "?order=ASC"]) {
      expect(forwardedQuery("openai", bad, items)).toBe("");
    }
    expect(
      forwardedQuery(
        "openai",
        "?include[]=file_search_call.results&include[]=x&include[]=file_search_call.results&include[]=reasoning.encrypted_content",
        items,
      ),
    ).toBe("?include%5B%5D=file_search_call.results&include%5B%5D=reasoning.encrypted_content");
    // Paging parameters are the list call's only: the same query on a retrieve keeps include[] alone, on cancel nothing.
    expect(forwardedQuery("openai", "?limit=5&include[]=message.output_text.logprobs", "/v1/responses/resp_abc")).toBe(
      "?include%5B%5D=message.output_text.logprobs",
    );
    expect(forwardedQuery("openai", "?limit=5", "/v1/responses/resp_abc/cancel")).toBe("");
    expect(forwardedQuery("openai", "?limit=5", "/v1/responses/resp_abc/input_items/x")).toBe("");
  });
});
