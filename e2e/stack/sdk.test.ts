/**
 * The official SDKs work against the gateway by changing only base URL and key, through a real Deno agent
 * and the mock provider; and the bytes the client receives are the bytes the provider sent.
 */
import { createHash } from "node:crypto";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import { documentedInputEstimate } from "../../gateway/src/billing/testing/estimate_spec.ts";
import { startStack, waitFor, type Stack } from "./harness.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

describe("official SDKs through gateway → tunnel → agent → provider", () => {
  it("openai: chat completion (non-streaming) returns the provider's answer and usage", async () => {
    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey });
    const res = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi [mock chunks=7]" }] });
    expect(res.choices[0]!.message.content).toBe("w0 w1 w2 w3 w4 w5 w6 ");
    expect(res.usage?.completion_tokens).toBe(7);
    const seen = stack.mock.requests.at(-1)!;
    expect(seen.path).toBe("/v1/chat/completions");
    // The provider got the owner's key from the agent, never the user's virtual key.
    expect(seen.headers.authorization).toBe("Bearer sk-test-owner-openai-key-123");
    expect(JSON.stringify(seen.headers)).not.toContain(stack.apiKey);
  });

  it("openai: streaming chat with include_usage arrives chunk by chunk with the final usage chunk", async () => {
    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey });
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "count [mock chunks=12 delay_ms=5]" }],
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(Array.from({ length: 12 }, (_, i) => `w${i} `).join(""));
    expect(chunks).toBe(15); // role chunk + 12 content + finish + usage
    expect(usage?.completion_tokens).toBe(12);
  });

  it("openai: embeddings", async () => {
    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey });
    const res = await client.embeddings.create({ model: "text-embedding-3-small", input: ["a", "b", "c"] });
    expect(res.data).toHaveLength(3);
    expect(res.data[2]!.embedding).toHaveLength(8);
    expect(res.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it("openai: responses API streaming events", async () => {
    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey });
    const stream = await client.responses.create({ model: "gpt-4o-mini", input: "hello [mock chunks=4]", stream: true });
    const types: string[] = [];
    let finalUsage: number | undefined;
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === "response.completed") finalUsage = ev.response.usage?.output_tokens;
    }
    expect(types[0]).toBe("response.created");
    expect(types.filter((t) => t === "response.output_text.delta")).toHaveLength(4);
    expect(finalUsage).toBe(4);
  });

  it("anthropic: streaming messages with usage in message_start and message_delta", async () => {
    const client = new Anthropic({ baseURL: stack.baseUrl, apiKey: stack.apiKey });
    const stream = client.messages.stream({
      model: "claude-haiku-4-5",
      max_tokens: 100,
      messages: [{ role: "user", content: "hi [mock chunks=6 delay_ms=2]" }],
    });
    let text = "";
    stream.on("text", (t) => (text += t));
    const final = await stream.finalMessage();
    expect(text).toBe("w0 w1 w2 w3 w4 w5 ");
    expect(final.usage.output_tokens).toBe(6);
    expect(final.stop_reason).toBe("end_turn");
    const seen = stack.mock.requests.at(-1)!;
    expect(seen.headers["x-api-key"]).toBe("sk-ant-test-owner-key");
    expect(seen.headers["anthropic-version"]).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });

  it("anthropic: non-streaming message and the provider's org header never reaches the user", async () => {
    const res = await fetch(`${stack.baseUrl}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": stack.apiKey, "anthropic-version": "2023-06-01", "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-haiku-4-5", max_tokens: 10, messages: [{ role: "user", content: "x [mock chunks=2]" }] }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("anthropic-organization-id")).toBeNull();
    expect(res.headers.get("x-wellspring-request-id")).toMatch(/^req_/);
    expect(stack.mock.requests.at(-1)!.headers["anthropic-version"]).toBe("2023-06-01");
    const body = (await res.json()) as { content: { text: string }[] };
    expect(body.content[0]!.text).toBe("w0 w1 ");
  });

  it("bytes are exact both ways, SSE included, for bodies from 0 B to 20 MB", async () => {
    const sizes = [0, 1, 1000, 64 * 1024 - 1, 64 * 1024 + 1, 1024 * 1024, 5 * 1024 * 1024, 20 * 1024 * 1024];
    for (const size of sizes) {
      for (const stream of [false, true]) {
        // A request body of exactly `size` bytes (padding inside a JSON string), asking for a response of ~size bytes.
        let body = "";
        if (size > 0) {
          const prefix = `{"model":"gpt-4o-mini","stream":${stream},"messages":[{"role":"user","content":"[mock chunks=8 bytes=${size}] `;
          const suffix = `"}]}`;
          body = size >= prefix.length + suffix.length ? prefix + "p".repeat(size - prefix.length - suffix.length) + suffix : "{".repeat(size);
        }
        expect(Buffer.byteLength(body)).toBe(size);
        const res = await fetch(`${stack.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
          body,
        });
        const received = new Uint8Array(await res.arrayBuffer());
        const requestId = res.headers.get("x-wellspring-request-id");
        if (size < 80) {
          // Too small to name a model: the gateway answers itself, in OpenAI's error shape.
          expect(res.status).toBe(400);
          expect((JSON.parse(new TextDecoder().decode(received)) as { error: { code: string } }).error.code).toMatch(/model_required|invalid_request/);
          continue;
        }
        expect(res.status, `size ${size} stream ${stream} ${requestId}`).toBe(200);
        const seen = stack.mock.requests.filter((r) => r.requestSha256 === sha(body)).at(-1);
        expect(seen, `provider never saw the ${size}-byte body`).toBeDefined();
        expect(seen!.requestBytes).toBe(size);
        expect(seen!.responseBytes).toBe(received.length);
        expect(sha(received)).toBe(seen!.responseSha256);
        if (stream) expect(new TextDecoder().decode(received.subarray(received.length - 14))).toBe("data: [DONE]\n\n");
      }
    }
  }, 120_000);

  it("multipart uploads pass through whole and route by their model field", async () => {
    const form = new FormData();
    const audio = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251);
    form.append("file", new Blob([audio], { type: "audio/mpeg" }), "speech.mp3");
    form.append("model", "whisper-1");
    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey });
    const res = await client.audio.transcriptions.create({ file: new File([audio], "speech.mp3", { type: "audio/mpeg" }), model: "whisper-1" });
    const seen = stack.mock.requests.at(-1)!;
    expect(seen.path).toBe("/v1/audio/transcriptions");
    expect(res.text).toBe(`received ${seen.requestBytes} bytes`);
    expect(seen.requestBytes).toBeGreaterThan(audio.length);
  });

  it("each request's record carries the usage the provider reported, streamed or not", async () => {
    const send = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
      const res = await fetch(`${stack.baseUrl}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
      const text = await res.text();
      return { id: res.headers.get("x-wellspring-request-id")!, text };
    };
    const chat = await send("/v1/chat/completions", {
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "[mock chunks=12]" }],
    });
    const noUsageBody = { model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "[mock chunks=3]" }] };
    const noUsage = await send("/v1/chat/completions", noUsageBody);
    const claude = await send(
      "/v1/messages",
      { model: "claude-haiku-4-5", stream: true, max_tokens: 50, messages: [{ role: "user", content: "[mock chunks=7]" }] },
      { "anthropic-version": "2023-06-01" },
    );
    const emb = await send("/v1/embeddings", { model: "text-embedding-3-small", input: "hello" });
    const ids = [chat.id, noUsage.id, claude.id, emb.id];
    await waitFor(async () => (await stack.db.requestRecord.count({ where: { id: { in: ids } } })) === ids.length);
    const rows = new Map((await stack.db.requestRecord.findMany({ where: { id: { in: ids } } })).map((r) => [r.id, r]));
    const promptOf = (text: string, key: string) => Number(new RegExp(`"${key}":(\\d+)`).exec(text)![1]);
    expect(rows.get(chat.id)).toMatchObject({ outputTokens: 12, inputTokens: promptOf(chat.text, "prompt_tokens"), streamed: true, endCause: "completed" });
    // No usage reported: billing estimates it (the delivered text "w0 w1 w2 ", the request's strings) and says so.
    expect(rows.get(noUsage.id)).toMatchObject({
      outputTokens: countTokens("w0 w1 w2 "),
      inputTokens: documentedInputEstimate(noUsageBody),
      usageEstimated: true,
    });
    expect(rows.get(claude.id)).toMatchObject({ outputTokens: 7, inputTokens: promptOf(claude.text, "input_tokens") });
    expect(rows.get(emb.id)).toMatchObject({ outputTokens: 0, inputTokens: promptOf(emb.text, "prompt_tokens") });
  });
});
