/** The mock's provider-side RPM limit: 429 above it, in each family's shape, with the providers' headers. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startMockProvider, type MockProvider } from "./mod.ts";

let mock: MockProvider;
beforeAll(async () => {
  mock = await startMockProvider({ rpmLimit: 3 });
});
afterAll(async () => {
  await mock.close();
});

const post = (path: string, body: unknown) =>
  fetch(`${mock.origin}${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer sk-x" }, body: JSON.stringify(body) });

it("answers 429 above its RPM with x-ratelimit-* and anthropic-ratelimit-* headers", async () => {
  const chat = { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] };
  for (let i = 0; i < 3; i++) {
    const ok = await post("/v1/chat/completions", chat);
    expect(ok.status).toBe(200);
    // Every answer carries the key's limit and what is left, as the providers send them.
    expect(ok.headers.get("x-ratelimit-limit-requests")).toBe("3");
    expect(ok.headers.get("x-ratelimit-remaining-requests")).toBe(String(2 - i));
  }
  const refused = await post("/v1/chat/completions", chat);
  expect(refused.status).toBe(429);
  expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("rate_limit_exceeded");
  expect(refused.headers.get("x-ratelimit-limit-requests")).toBe("3");
  expect(refused.headers.get("x-ratelimit-remaining-requests")).toBe("0");
  // One request refills in 20 s at 3 RPM.
  const waitMs = Number(refused.headers.get("retry-after-ms"));
  expect(waitMs).toBeGreaterThan(15_000);
  expect(waitMs).toBeLessThanOrEqual(20_000);
  expect(refused.headers.get("retry-after")).toBe(String(Math.ceil(waitMs / 1000)));
  const anthropic = await post("/v1/messages", { model: "claude-haiku-4-5", max_tokens: 5, messages: [{ role: "user", content: "hi" }] });
  expect(anthropic.status).toBe(429);
  expect(((await anthropic.json()) as { error: { type: string } }).error.type).toBe("rate_limit_error");
  expect(anthropic.headers.get("anthropic-ratelimit-requests-limit")).toBe("3");
  expect(Date.parse(anthropic.headers.get("anthropic-ratelimit-requests-reset")!)).toBeGreaterThan(Date.now());
});

it("answers 429 above its TPM (estimated input + max_tokens), with the token headers on every answer", async () => {
  const tpmMock = await startMockProvider({ tpmLimit: 1_000 });
  try {
    const send = (path: string, maxTokens: number) =>
      fetch(`${tpmMock.origin}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer sk-x" },
        body: JSON.stringify({
          model: path === "/v1/messages" ? "claude-haiku-4-5" : "gpt-4o-mini",
          max_tokens: maxTokens,
          messages: [{ role: "user", content: "hi" }],
        }),
      });
    const ok = await send("/v1/chat/completions", 600);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-ratelimit-limit-tokens")).toBe("1000");
    const left = Number(ok.headers.get("x-ratelimit-remaining-tokens"));
    // 600 output tokens and a ~100-byte body's ~25 input tokens were counted.
    expect(left).toBeLessThan(400);
    expect(left).toBeGreaterThan(350);
    const refused = await send("/v1/chat/completions", 600);
    expect(refused.status).toBe(429);
    const body = (await refused.json()) as { error: { type: string; code: string } };
    expect(body.error).toMatchObject({ type: "tokens", code: "rate_limit_exceeded" });
    expect(refused.headers.get("x-ratelimit-remaining-tokens")).toBe("0");
    expect(Number(refused.headers.get("retry-after-ms"))).toBeGreaterThan(10_000);
    // A smaller request still fits what is left.
    expect((await send("/v1/chat/completions", 5)).status).toBe(200);
    const anthropic = await send("/v1/messages", 900);
    expect(anthropic.status).toBe(429);
    expect(anthropic.headers.get("anthropic-ratelimit-tokens-limit")).toBe("1000");
    expect(((await anthropic.json()) as { error: { type: string } }).error.type).toBe("rate_limit_error");
  } finally {
    await tpmMock.close();
  }
});
