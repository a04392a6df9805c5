/**
 * Bad input and upstream failures reach the user as clear errors in the provider's own shape, and a key
 * never appears in an answer.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { startStack, type Stack } from "./harness.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ gatewayEnv: { REQUEST_BODY_BYTES_MAX: String(1024 * 1024) } });
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

/** Both providers' error shapes: OpenAI's `{ error: { message, type, param, code } }`, Anthropic's `{ type: "error", error: { type, message } }`. */
interface ErrorBody {
  type?: string;
  error: { message: string; type: string; param?: string | null; code?: string | null };
}

async function call(path: string, init: { key?: string | null; body?: string; method?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { "content-type": "application/json", ...init.headers };
  if (init.key !== null) headers.authorization = `Bearer ${init.key ?? stack.apiKey}`;
  const res = await fetch(`${stack.baseUrl}${path}`, { method: init.method ?? "POST", headers, body: init.body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: JSON.parse(text) as ErrorBody };
}

const chat = (model: string, extra = "") => JSON.stringify({ model, messages: [{ role: "user", content: `hi ${extra}` }] });

describe("gateway errors", () => {
  it("401 for a missing or wrong key, OpenAI-shaped on OpenAI routes, Anthropic-shaped on /v1/messages", async () => {
    const missing = await call("/v1/chat/completions", { key: null, body: chat("gpt-4o-mini") });
    expect(missing.status).toBe(401);
    expect(missing.json.error).toMatchObject({ type: "invalid_request_error", code: "missing_api_key" });
    const wrongKey = "sk-ws-" + "z".repeat(40);
    const wrong = await call("/v1/chat/completions", { key: wrongKey, body: chat("gpt-4o-mini") });
    expect(wrong.status).toBe(401);
    expect(wrong.json.error.code).toBe("invalid_api_key");
    expect(wrong.text).not.toContain(wrongKey.slice(6));
    const anthropic = await call("/v1/messages", {
      key: null,
      headers: { "x-api-key": wrongKey, "anthropic-version": "2023-06-01" },
      body: chat("claude-haiku-4-5"),
    });
    expect(anthropic.status).toBe(401);
    expect(anthropic.json).toEqual({ type: "error", error: { type: "authentication_error", message: expect.any(String) } });
    // The SDKs surface them as their own typed errors.
    await expect(
      new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: wrongKey, maxRetries: 0 }).chat.completions.create({ model: "gpt-4o-mini", messages: [] }),
    ).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(
      new Anthropic({ baseURL: stack.baseUrl, apiKey: wrongKey, maxRetries: 0 }).messages.create({
        model: "claude-haiku-4-5",
        max_tokens: 5,
        messages: [{ role: "user", content: "x" }],
      }),
    ).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
  });

  it("a revoked key stops working: at once when revoked through the product, within the cache's TTL behind its back", async () => {
    const { issueKey, revokeKey } = await import("../../gateway/src/ops/keys.ts");
    const { KEY_CACHE_TTL_MS } = await import("../../gateway/src/api/keys.ts");
    const status = async (secret: string) => (await call("/v1/chat/completions", { key: secret, body: chat("gpt-4o-mini") })).status;
    /** Polls until the key is refused; how long it took, ms. */
    const refusedWithin = async (secret: string) => {
      const started = Date.now();
      while ((await status(secret)) !== 401) {
        if (Date.now() - started > KEY_CACHE_TTL_MS + 2_000) throw new Error("the revoked key kept working");
        await new Promise((r) => setTimeout(r, 50));
      }
      return Date.now() - started;
    };
    const key = await issueKey(stack.db, stack.userId, "to-revoke");
    expect(await status(key.secret)).toBe(200);
    await revokeKey(stack.db, key.id);
    expect(await refusedWithin(key.secret)).toBeLessThan(1_000); // the key_changed hub event
    const other = await issueKey(stack.db, stack.userId, "revoked-by-sql");
    expect(await status(other.secret)).toBe(200);
    await stack.db.virtualKey.update({ where: { id: other.id }, data: { status: "revoked" } }); // no event
    expect(await refusedWithin(other.secret)).toBeLessThanOrEqual(KEY_CACHE_TTL_MS + 1_000);
  }, 20_000);

  it("404 for an unknown model, 503 with Retry-After for a priced model no agent serves and when the model's agents are all offline", async () => {
    const unknown = await call("/v1/chat/completions", { body: chat("gpt-9-imaginary") });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatchObject({ code: "model_not_found", param: "model" });
    // A model of the official price table that no agent serves is not "missing": it is not available right now.
    const listed = await call("/v1/chat/completions", { body: chat("o3") });
    expect(listed.status).toBe(503);
    expect(listed.json.error).toMatchObject({
      code: "no_capacity",
      message: "The model 'o3' is not available right now: no connected agent serves it. Retry later; GET /v1/models lists the models available now.",
    });
    await stack.db.agent.create({
      data: { id: newId("agt"), ownerId: stack.ownerId, name: "offline", publicKey: newId("hub"), models: ["openai:gpt-offline-only"] },
    });
    // The gateway learns models it has no connection for from the database (cached up to 10 s).
    let offline = await call("/v1/chat/completions", { body: chat("gpt-offline-only") });
    for (let i = 0; i < 120 && offline.status === 404; i++) {
      await new Promise((r) => setTimeout(r, 100));
      offline = await call("/v1/chat/completions", { body: chat("gpt-offline-only") });
    }
    expect(offline.status).toBe(503);
    expect(offline.json.error.code).toBe("no_capacity");
    expect(Number(offline.headers.get("retry-after"))).toBeGreaterThan(0);
    const anthropicUnknown = await call("/v1/messages", { body: chat("claude-imaginary") });
    expect(anthropicUnknown.json).toMatchObject({ type: "error", error: { type: "not_found_error" } });
  }, 20_000);

  it("400 for malformed bodies and a missing model; 404 and 405 for wrong routes", async () => {
    const notJson = await call("/v1/chat/completions", { body: "{not json" });
    expect(notJson.status).toBe(400);
    expect(notJson.json.error.type).toBe("invalid_request_error");
    const array = await call("/v1/chat/completions", { body: "[1,2]" });
    expect(array.status).toBe(400);
    const noModel = await call("/v1/chat/completions", { body: JSON.stringify({ messages: [] }) });
    expect(noModel.status).toBe(400);
    expect(noModel.json.error.code).toBe("model_required");
    const route = await call("/v1/nope", { body: "{}" });
    expect(route.status).toBe(404);
    const method = await call("/v1/chat/completions", { method: "GET" });
    expect(method.status).toBe(405);
    const keyLimited = await (
      await import("../../gateway/src/ops/keys.ts")
    ).issueKey(stack.db, stack.userId, "limited", { allowedModels: ["claude-haiku-4-5"] });
    const forbidden = await call("/v1/chat/completions", { key: keyLimited.secret, body: chat("gpt-4o-mini") });
    expect(forbidden.status).toBe(403);
    expect(forbidden.json.error.code).toBe("model_not_allowed");
  });

  it("413 for a body over the limit, declared or streamed", async () => {
    const big = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(2 * 1024 * 1024) }] });
    const declared = await call("/v1/chat/completions", { body: big });
    expect(declared.status).toBe(413);
    expect(declared.json.error.code).toBe("body_too_large");
    // Chunked (no Content-Length): cut off once it passes the limit, nothing forwarded past it.
    const before = stack.mock.requests.length;
    const chunked = await fetch(`${stack.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode(big));
          c.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(413);
    await new Promise((r) => setTimeout(r, 300));
    const forwarded = stack.mock.requests.slice(before);
    expect(forwarded.every((r) => r.finishedAt === null || r.requestBytes <= 1024 * 1024)).toBe(true);
  });

  it("provider errors pass through as the provider sent them: 429 with retry headers, context length", async () => {
    const limited = await call("/v1/chat/completions", { body: chat("gpt-4o-mini", "[mock status=429]") });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("1");
    expect(limited.json.error.code).toBe("rate_limit_exceeded");
    // The agent holds its provider key for the provider's retry-after: a call meanwhile is refused by the agent
    // before it reaches the provider, in the route's shape, with the time left.
    const providerCalls = stack.mock.requests.length;
    const held = await call("/v1/chat/completions", { body: chat("gpt-4o-mini", "hi") });
    expect(held.status).toBe(429);
    expect(held.json.error.code).toBe("rate_limited");
    expect(Number(held.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(stack.mock.requests.length).toBe(providerCalls);
    await new Promise((r) => setTimeout(r, 1_100));
    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
    const err = await client.chat.completions
      .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "[mock error=context]" }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("context_length_exceeded");
    const anthropic = new Anthropic({ baseURL: stack.baseUrl, apiKey: stack.apiKey, maxRetries: 0 });
    const aerr = await anthropic.messages
      .create({ model: "claude-haiku-4-5", max_tokens: 5, messages: [{ role: "user", content: "[mock status=429]" }] })
      .catch((e: unknown) => e);
    expect(aerr).toBeInstanceOf(Anthropic.RateLimitError);
    expect((aerr as InstanceType<typeof Anthropic.RateLimitError>).headers?.get("retry-after")).toBe("1");
  });

  it("records every proxied request with its end cause and never its content", async () => {
    await new Promise((r) => setTimeout(r, 500));
    const rows = await stack.db.requestRecord.findMany({ where: { userId: stack.userId } });
    expect(rows.length).toBeGreaterThan(3);
    const causes = new Set(rows.map((r) => r.endCause));
    expect(causes.has("completed")).toBe(true);
    expect(causes.has("upstream_error")).toBe(true);
    expect(JSON.stringify(rows, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))).not.toMatch(/hi \[mock|"messages"/);
  });
});
