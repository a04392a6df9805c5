/**
 * Limits on the request path of a real stack (gateway process sharing the machine's Redis under its own prefix,
 * a Deno agent, the mock provider): keys made with `npm run admin -- create-key --rpm/--tpm/--concurrency/
 * --monthly-budget-micros`, refusals in each API's shape with the headers the official SDKs read (their own retries
 * shown working), the monthly budget, and stalled uploads that hold nothing from other users.
 */
import { execFile } from "node:child_process";
import net from "node:net";
import { promisify } from "node:util";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { issueKey } from "@wellspring/gateway";
import { fund, ROOT, startStack, TSX, waitFor, type Stack } from "./harness.ts";

const run = promisify(execFile);
/** A body silent this long before dispatch is answered 408 (the test's setting; 30 s by default), ms. */
const BODY_IDLE_MS = 1_500;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ gatewayEnv: { REQUEST_BODY_IDLE_TIMEOUT_MS: String(BODY_IDLE_MS) } });
  await stack.waitForModel("gpt-4o-mini");
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

/** A key for the stack's user, made by the operator's command as documented. */
async function createKey(...limits: string[]): Promise<string> {
  const user = await stack.db.user.findUniqueOrThrow({ where: { id: stack.userId } });
  const r = await run(TSX, ["gateway/src/cli/admin.ts", "create-key", "--email", user.email, "--name", "limited", ...limits], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: stack.database.url },
  });
  return r.stdout.trim().split("\n").at(-1)!;
}

const chatBody = (extra: Record<string, unknown> = {}, content = "hi") =>
  JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content }], ...extra });

function chat(key: string, body = chatBody()) {
  return fetch(`${stack.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body,
  });
}

/** A fetch for the SDKs that records each response's status, so a test sees their retries. */
const recording =
  (seen: number[]): typeof fetch =>
  async (url, init) => {
    const res = await fetch(url, init);
    seen.push(res.status);
    return res;
  };

describe("limits on the request path", () => {
  it("create-key refuses a malformed limit", async () => {
    await expect(createKey("--rpm", "0")).rejects.toMatchObject({ stderr: expect.stringContaining("--rpm must be a positive whole number") });
    await expect(createKey("--monthly-budget-micros", "1.5")).rejects.toMatchObject({ stderr: expect.stringContaining("--monthly-budget-micros") });
  });

  it("RPM: the request past the limit gets 429 with retry-after and x-ratelimit headers, and the OpenAI SDK's own retry then succeeds", async () => {
    const key = await createKey("--rpm", "30");
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await chat(key)).status);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const refused = await chat(key);
    expect(refused.status).toBe(429);
    const body = (await refused.json()) as { error: { type: string; code: string; message: string } };
    expect(body.error).toMatchObject({ type: "requests", code: "rate_limited" });
    expect(body.error.message).toContain("requests per minute");
    expect(refused.headers.get("x-ratelimit-limit-requests")).toBe("30");
    expect(refused.headers.get("x-ratelimit-remaining-requests")).toBe("0");
    expect(refused.headers.get("x-ratelimit-reset-requests")).toMatch(/^\d+\.\d{3}s$/);
    const waitMs = Number(refused.headers.get("retry-after-ms"));
    expect(waitMs).toBeGreaterThan(0);
    expect(waitMs).toBeLessThanOrEqual(2_000); // one request refills in 2 s at 30 RPM
    expect(Number(refused.headers.get("retry-after"))).toBe(Math.ceil(waitMs / 1000));
    expect(refused.headers.get("x-should-retry")).toBe("true");

    const seen: number[] = [];
    const openai = new OpenAI({
      baseURL: `${stack.baseUrl}/v1`,
      apiKey: key,
      maxRetries: 3,
      fetch: recording(seen),
    });
    // Drain whatever refilled meanwhile, so the SDK's first try meets the limit.
    while ((await chat(key)).status === 200);
    const answer = await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
    expect(answer.choices[0]?.message.content).toBeTruthy();
    expect(seen[0]).toBe(429);
    expect(seen.at(-1)).toBe(200);
  });

  it("on /v1/messages the refusal is Anthropic-shaped with anthropic-ratelimit headers, and the Anthropic SDK's retry succeeds", async () => {
    const key = await createKey("--rpm", "30");
    const messages = () =>
      fetch(`${stack.baseUrl}/v1/messages`, {
        method: "POST",
        headers: { "x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json" },
        body: JSON.stringify({ model: "claude-haiku-4-5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] }),
      });
    let refused: Response | null = null;
    for (let i = 0; i < 40 && !refused; i++) {
      const r = await messages();
      if (r.status === 429) refused = r;
      else expect(r.status).toBe(200);
    }
    expect(refused).not.toBeNull();
    expect(await refused!.json()).toEqual({ type: "error", error: { type: "rate_limit_error", message: expect.stringContaining("requests per minute") } });
    expect(refused!.headers.get("anthropic-ratelimit-requests-limit")).toBe("30");
    expect(refused!.headers.get("anthropic-ratelimit-requests-remaining")).toBe("0");
    expect(Date.parse(refused!.headers.get("anthropic-ratelimit-requests-reset")!)).toBeGreaterThan(Date.now() - 1_000);
    const seen: number[] = [];
    const anthropic = new Anthropic({
      baseURL: stack.baseUrl,
      apiKey: key,
      maxRetries: 3,
      fetch: recording(seen),
    });
    while ((await messages()).status === 200);
    const msg = await anthropic.messages.create({ model: "claude-haiku-4-5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] });
    expect(msg.content.length).toBeGreaterThan(0);
    expect(seen[0]).toBe(429);
    expect(seen.at(-1)).toBe(200);
  });

  it("TPM: requests in flight count their input and output cap; a settled request counts its usage", async () => {
    const key = await createKey("--tpm", "1000");
    // Held open by the mock so their estimates (≈ 600 tokens each) are counted together.
    const slow = () => chat(key, chatBody({ max_tokens: 600 }, "[mock first_delay_ms=1500]"));
    const held = [slow(), slow()];
    await new Promise((r) => setTimeout(r, 400));
    // 1,000 − 2 × ~600 < 0: the bucket is spent until they settle.
    const refused = await chat(key, chatBody({ max_tokens: 10 }));
    expect(refused.status).toBe(429);
    expect(refused.headers.get("x-ratelimit-limit-tokens")).toBe("1000");
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain("tokens per minute");
    const done = await Promise.all(held);
    expect(done.map((r) => r.status)).toEqual([200, 200]);
    // Settled to their usage (a few tokens each): the minute's tokens are back.
    expect((await chat(key, chatBody({ max_tokens: 600 }))).status).toBe(200);
  });

  it("concurrency: requests in flight past the key's limit get 429 at once; their ends free the slots", async () => {
    const key = await createKey("--concurrency", "2");
    // The mock provider waits before answering when the prompt asks it to.
    const slow = () => chat(key, chatBody({}, "[mock first_delay_ms=1500]"));
    const before = stack.mock.requests.length;
    const held = [slow(), slow()];
    // Both are in flight once the provider has them (the delay keeps them there).
    await waitFor(() => stack.mock.requests.length >= before + 2);
    const third = await chat(key);
    expect(third.status).toBe(429);
    expect(((await third.json()) as { error: { message: string } }).error.message).toContain("in flight");
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200]);
    expect((await chat(key)).status).toBe(200);
  });

  it("monthly budget: refused once the month's charges reach it, exceeded by at most one request's cost", async () => {
    const key = await createKey("--monthly-budget-micros", "2000");
    // 300 output tokens of gpt-4o-mini: 180 µ$ and a little input each.
    const costly = () => chat(key, chatBody({ max_tokens: 400 }, "[mock bytes=1200 output_tokens=300]"));
    let admitted = 0;
    let refused: Response | null = null;
    for (let i = 0; i < 30 && !refused; i++) {
      const r = await costly();
      if (r.status === 429) refused = r;
      else {
        expect(r.status).toBe(200);
        admitted++;
      }
    }
    expect(refused).not.toBeNull();
    expect(((await refused!.json()) as { error: { code: string; type: string } }).error).toMatchObject({ code: "budget_exceeded", type: "insufficient_quota" });
    const keyRow = await stack.db.virtualKey.findFirstOrThrow({ where: { userId: stack.userId, monthlyBudgetMicros: 2000n } });
    await expect.poll(() => stack.db.requestRecord.count({ where: { keyId: keyRow.id, httpStatus: 200 } }), { timeout: 10_000 }).toBe(admitted);
    const charged = await stack.db.requestRecord.aggregate({ where: { keyId: keyRow.id }, _sum: { userChargeMicros: true }, _max: { userChargeMicros: true } });
    const spent = charged._sum.userChargeMicros ?? 0n;
    const oneRequest = charged._max.userChargeMicros ?? 0n;
    expect(oneRequest).toBeGreaterThan(150n);
    expect(spent).toBeGreaterThanOrEqual(2000n);
    expect(spent).toBeLessThanOrEqual(2000n + oneRequest);
  });

  it("256 stalled uploads from one key: answered 408 after the body idle limit, and another user is served normally meanwhile", async () => {
    const otherUser = newId("usr");
    await stack.db.user.create({ data: { id: otherUser, email: `${otherUser}@user.test` } });
    await fund(stack.database.url, otherUser, 100_000_000n);
    const other = await issueKey(stack.db, otherUser, "other");
    const url = new URL(stack.baseUrl);
    // Each upload declares 1 MiB and sends 300 KiB (past what the gateway reads before dispatch), then stalls.
    const prefix = Buffer.from(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${"x".repeat(300 * 1024)}`);
    const answers: Promise<string>[] = [];
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 256; i++) {
      const socket = net.connect(Number(url.port), url.hostname);
      sockets.push(socket);
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${stack.apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${1024 * 1024}\r\n\r\n`,
      );
      socket.write(prefix);
      answers.push(
        new Promise((resolve) => {
          let text = "";
          socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
          socket.on("close", () => resolve(text));
          socket.on("error", () => resolve(text));
        }),
      );
    }
    const started = Date.now();
    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = Date.now();
      const r = await chat(other.secret);
      expect(r.status).toBe(200);
      latencies.push(Date.now() - t);
    }
    latencies.sort((a, b) => a - b);
    expect(latencies[5]!).toBeLessThan(500);
    const texts = await Promise.all(answers);
    expect(Date.now() - started).toBeGreaterThanOrEqual(BODY_IDLE_MS - 200);
    const timedOut = texts.filter((t) => t.startsWith("HTTP/1.1 408"));
    expect(timedOut.length).toBe(256);
    expect(texts[0]).toContain("The request body stalled");
    for (const s of sockets) s.destroy();
  }, 60_000);
});
