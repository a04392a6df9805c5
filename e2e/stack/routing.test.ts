/**
 * The routing policy through real processes: two Deno agents, the preferred one (tier S) behind a provider
 * whose models hold 2,000 tokens (its model list says so, and the agent reports it). An over-long request is
 * sent only to the agent that can hold it; a key restricted to owners or to a minimum tier is served only by
 * those agents, and gets a 400 in the API's shape when none of them can hold the request. A Responses API
 * follow-up (`previous_response_id`) reaches the agent that created the response.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { adminFetch, enrollAgent, ROOT, startAgentProc, startStack, TSX, waitFor, type AgentProc, type Stack } from "./harness.ts";

const run = promisify(execFile);

const SMALL_WINDOW_TOKENS = 2_000;
/** About 3,000 tokens at the hub's 4 bytes per token: more than the small window holds. */
const LONG_TEXT = "word ".repeat(2_400);

let stack: Stack;
let mockSmall: MockProvider;
let agentSmall: AgentProc;
let ownerSmall: string;

function openai(apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey, maxRetries: 0 });
}

beforeAll(async () => {
  stack = await startStack({ gatewayEnv: { BILLING_ENABLED: "0" } });
  ownerSmall = newId("usr");
  await stack.db.user.create({ data: { id: ownerSmall, email: `${ownerSmall}@owner.test`, isOwner: true } });
  mockSmall = await startMockProvider({ contextTokens: SMALL_WINDOW_TOKENS });
  const enrolled = await enrollAgent(stack.db, stack.gateway, ownerSmall);
  await stack.db.agent.update({ where: { id: enrolled.agentId }, data: { tier: "S" } });
  agentSmall = await startAgentProc(enrolled.dataDir, enrolled.agentId, mockSmall.origin);
  // The agent reads its provider's model list and reports the window in its inventory.
  await waitFor(async () => {
    const body = (await (await adminFetch(stack.gateway.adminOrigin, "/admin/v1/agents")).json()) as {
      data: { id: string; models: { model: string; context_tokens: number | null }[] }[];
    };
    const small = body.data.find((a) => a.id === enrolled.agentId);
    return small?.models.find((m) => m.model === "gpt-4o-mini")?.context_tokens === SMALL_WINDOW_TOKENS;
  }, 20_000);
}, 180_000);

afterAll(async () => {
  await agentSmall?.stop();
  await mockSmall?.close();
  await stack?.close();
});

describe("routing policy", () => {
  it("sends a short request to the preferred small-window agent and an over-long one only to the agent that holds it", async () => {
    const client = openai(stack.apiKey);
    const [smallBefore, bigBefore] = [mockSmall.requests.length, stack.mock.requests.length];
    await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "short" }] });
    expect(mockSmall.requests.length).toBe(smallBefore + 1);
    const long = await client.chat.completions.create({ model: "gpt-4o-mini", max_tokens: 100, messages: [{ role: "user", content: LONG_TEXT }] });
    expect(long.choices[0]!.message.content).toContain("w0");
    expect(mockSmall.requests.length).toBe(smallBefore + 1);
    expect(stack.mock.requests.length).toBe(bigBefore + 1);
  });

  it("a key restricted to one owner (made with the admin CLI) is served only by that owner's agent", async () => {
    const { stdout } = await run(
      TSX,
      ["gateway/src/cli/admin.ts", "create-key", "--email", `${stack.userId}@user.test`, "--owners", `${stack.ownerId}@owner.test`],
      {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: stack.database.url },
      },
    );
    const secret = stdout.trim().split("\n").pop()!;
    expect(secret).toMatch(/^sk-ws-/);
    const bad = await run(TSX, ["gateway/src/cli/admin.ts", "create-key", "--email", `${stack.userId}@user.test`, "--min-tier", "discount"], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: stack.database.url },
    }).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 1, stderr: expect.stringContaining("--min-tier must be S or A") });
    const smallBefore = mockSmall.requests.length;
    for (let i = 0; i < 3; i++) await openai(secret).chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "short" }] });
    expect(mockSmall.requests.length).toBe(smallBefore);
  });

  it("a key with minimum tier S gets a 400 in the API's shape when no tier S agent can hold the request", async () => {
    const key = await issueKey(stack.db, stack.userId, "tier-s", { minAgentTier: "S" });
    const bigBefore = stack.mock.requests.length;
    await openai(key.secret).chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "short" }] });
    const error = await openai(key.secret)
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: LONG_TEXT }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("context_length_exceeded");
    const anthropic = new Anthropic({ baseURL: stack.baseUrl, apiKey: key.secret, maxRetries: 0 });
    const aError = await anthropic.messages
      .create({ model: "claude-haiku-4-5", max_tokens: 100, messages: [{ role: "user", content: LONG_TEXT }] })
      .catch((e: unknown) => e);
    expect(aError).toBeInstanceOf(Anthropic.BadRequestError);
    expect((aError as InstanceType<typeof Anthropic.BadRequestError>).error).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    expect(stack.mock.requests.length).toBe(bigBefore);
  });

  it("a previous_response_id follow-up reaches the agent that created the response; an unknown one is a 404", async () => {
    // Created through the stack's agent (a key restricted to its owner), though the default key prefers the other.
    const ownerKey = await issueKey(stack.db, stack.userId, "create-on-big", { allowedOwnerIds: [stack.ownerId] });
    const created = await openai(ownerKey.secret).responses.create({ model: "gpt-4o-mini", input: "remember this" });
    expect(created.id).toMatch(/^resp_/);
    const streamed = await openai(ownerKey.secret).responses.create({ model: "gpt-4o-mini", input: "and this", stream: true });
    let streamedId = "";
    for await (const event of streamed) if (event.type === "response.completed") streamedId = event.response.id;
    const client = openai(stack.apiKey);
    for (const previous of [created.id, streamedId]) {
      const [smallBefore, bigBefore] = [mockSmall.requests.length, stack.mock.requests.length];
      const follow = await client.responses.create({ model: "gpt-4o-mini", input: "what did I say?", previous_response_id: previous });
      expect(follow.status).toBe("completed");
      expect(mockSmall.requests.length).toBe(smallBefore);
      expect(stack.mock.requests.length).toBe(bigBefore + 1);
    }
    const unknown = await client.responses.create({ model: "gpt-4o-mini", input: "x", previous_response_id: "resp_never_made_here" }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect((unknown as InstanceType<typeof OpenAI.NotFoundError>).param).toBe("previous_response_id");
  });
});
