/**
 * Calls on a stored Responses API response — retrieve, input items, cancel, delete — through a real stack with
 * two Deno agents, each behind its own mock provider (one provider account each: neither knows the other's
 * responses), with the official `openai` client. Each call reaches the agent whose provider key made the
 * response; another user's key, an unknown id and a deleted response get OpenAI's 404; an agent that is away
 * gets a 503, and one that was revoked a 404.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { enrollAgent, startAgentProc, startStack, waitFor, type AgentProc, type Stack } from "./harness.ts";

let stack: Stack;
let mockB: MockProvider;
let agentB: AgentProc;
let agentBId: string;
let ownerB: string;

function openai(apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey, maxRetries: 0 });
}

/** Requests that reached a mock under `path` (the stored-response calls carry the id in the path). */
const callsTo = (mock: MockProvider, id: string) => mock.requests.filter((r) => r.path.includes(id)).map((r) => `${r.method} ${r.path}`);

beforeAll(async () => {
  stack = await startStack({ gatewayEnv: { BILLING_ENABLED: "0" } });
  ownerB = newId("usr");
  await stack.db.user.create({ data: { id: ownerB, email: `${ownerB}@owner.test`, isOwner: true } });
  mockB = await startMockProvider();
  const enrolled = await enrollAgent(stack.db, stack.gateway, ownerB);
  agentBId = enrolled.agentId;
  agentB = await startAgentProc(enrolled.dataDir, enrolled.agentId, mockB.origin);
  await waitFor(() => stack.db.agent.findUnique({ where: { id: agentBId } }).then((a) => a?.connectedSession != null), 20_000);
}, 180_000);

afterAll(async () => {
  await agentB?.stop();
  await mockB?.close();
  await stack?.close();
});

describe("stored responses reach the agent that made them", () => {
  let onA: OpenAI.Responses.Response;
  let onB: OpenAI.Responses.Response;

  beforeAll(async () => {
    // Made on a chosen agent each (keys restricted to its owner); the calls below use the user's unrestricted key.
    const keyA = await issueKey(stack.db, stack.userId, "on-a", { allowedOwnerIds: [stack.ownerId] });
    const keyB = await issueKey(stack.db, stack.userId, "on-b", { allowedOwnerIds: [ownerB] });
    onA = await openai(keyA.secret).responses.create({ model: "gpt-4o-mini", input: "kept at A" });
    const streamed = await openai(keyB.secret).responses.create({ model: "gpt-4o-mini", input: "kept at B", stream: true });
    for await (const event of streamed) if (event.type === "response.completed") onB = event.response;
    expect(callsTo(stack.mock, onA.id)).toEqual([]);
    expect(onB.id).toMatch(/^resp_/);
  });

  it("retrieve and input items go to the creating agent, whichever agent routing would prefer", async () => {
    const client = openai(stack.apiKey);
    for (let i = 0; i < 3; i++) {
      expect(await client.responses.retrieve(onA.id)).toMatchObject({ id: onA.id, status: "completed" });
      expect(await client.responses.retrieve(onB.id)).toMatchObject({ id: onB.id, status: "completed" });
    }
    const items = [];
    for await (const item of client.responses.inputItems.list(onB.id)) items.push(item);
    expect(items).toMatchObject([{ type: "message", role: "user", content: [{ type: "input_text", text: "kept at B" }] }]);
    expect(callsTo(stack.mock, onA.id)).toEqual(Array(3).fill(`GET /v1/responses/${onA.id}`));
    expect(callsTo(mockB, onB.id)).toEqual([...Array(3).fill(`GET /v1/responses/${onB.id}`), `GET /v1/responses/${onB.id}/input_items`]);
    expect(callsTo(stack.mock, onB.id)).toEqual([]);
    expect(callsTo(mockB, onA.id)).toEqual([]);
  });

  it("input items page through the hub with the client's limit, cursor and order; a query the rules refuse is dropped", async () => {
    const keyB = await issueKey(stack.db, stack.userId, "paged-on-b", { allowedOwnerIds: [ownerB] });
    const texts = ["one", "two", "three", "four", "five"];
    const made = await openai(keyB.secret).responses.create({
      model: "gpt-4o-mini",
      input: texts.map((text) => ({ type: "message" as const, role: "user" as const, content: text })),
    });
    const client = openai(stack.apiKey);
    const read = async (query: OpenAI.Responses.InputItemListParams) => {
      const seen: string[] = [];
      for await (const item of client.responses.inputItems.list(made.id, query)) seen.push((item as unknown as { content: string }).content);
      return seen;
    };
    expect(await read({ limit: 2, order: "asc" })).toEqual(texts);
    expect(await read({ limit: 3 })).toEqual([...texts].reverse());
    const listed = callsTo(mockB, made.id).map((call) => call.replace(`GET /v1/responses/${made.id}/input_items`, ""));
    // The SDK follows `has_more` with `after` = the page's last id; each page asked for what the client asked.
    expect(listed).toEqual([
      "?limit=2&order=asc",
      "?limit=2&after=msg_in_1&order=asc",
      "?limit=2&after=msg_in_3&order=asc",
      "?limit=3",
      "?limit=3&after=msg_in_2",
    ]);
    const refused = await fetch(`${stack.baseUrl}/v1/responses/${made.id}/input_items?limit=1000&after=../x&order=asc&api-version=1`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(refused.status).toBe(200);
    expect(((await refused.json()) as { data: { content: string }[] }).data.map((item) => item.content)).toEqual(texts);
    expect(callsTo(mockB, made.id).at(-1)).toBe(`GET /v1/responses/${made.id}/input_items?order=asc`);
  });

  it("cancel reaches the provider, whose own answer comes back", async () => {
    const error = await openai(stack.apiKey)
      .responses.cancel(onB.id)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as Error).message).toContain("Only responses created with background=true can be cancelled.");
    expect(callsTo(mockB, onB.id).at(-1)).toBe(`POST /v1/responses/${onB.id}/cancel`);
  });

  it("another user's key, an unknown id and another method are refused at the hub in OpenAI's shape; nothing reaches a provider", async () => {
    const other = newId("usr");
    await stack.db.user.create({ data: { id: other, email: `${other}@user.test` } });
    const otherKey = await issueKey(stack.db, other, "other");
    const before = [stack.mock.requests.length, mockB.requests.length];
    for (const id of [onA.id, onB.id, "resp_never_made_here"]) {
      const error = await openai(otherKey.secret)
        .responses.retrieve(id)
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.NotFoundError);
      expect((error as InstanceType<typeof OpenAI.NotFoundError>).error).toMatchObject({
        message: `Response with id '${id}' not found.`,
        type: "invalid_request_error",
      });
    }
    const deleted = await openai(otherKey.secret)
      .responses.delete(onA.id)
      .catch((e: unknown) => e);
    expect(deleted).toBeInstanceOf(OpenAI.NotFoundError);
    const follow = await openai(otherKey.secret)
      .responses.create({ model: "gpt-4o-mini", input: "what did they say?", previous_response_id: onB.id })
      .catch((e: unknown) => e);
    expect(follow).toBeInstanceOf(OpenAI.NotFoundError);
    const put = await fetch(`${stack.baseUrl}/v1/responses/${onA.id}`, { method: "PUT", headers: { authorization: `Bearer ${stack.apiKey}` } });
    expect(put.status).toBe(405);
    expect(await put.json()).toMatchObject({ error: { message: expect.stringContaining("use GET or DELETE") } });
    const withBody = await fetch(`${stack.baseUrl}/v1/responses/${onA.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(withBody.status).toBe(400);
    expect([stack.mock.requests.length, mockB.requests.length]).toEqual(before);
  });

  it("a deleted response is gone: the provider deletes it and the hub forgets its route", async () => {
    const client = openai(stack.apiKey);
    expect(await client.responses.delete(onA.id)).toMatchObject({ id: onA.id, deleted: true });
    expect(callsTo(stack.mock, onA.id).at(-1)).toBe(`DELETE /v1/responses/${onA.id}`);
    await waitFor(async () => (await stack.db.responseRoute.count({ where: { responseId: onA.id } })) === 0, 5_000);
    const calls = callsTo(stack.mock, onA.id).length;
    const again = await client.responses.retrieve(onA.id).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(OpenAI.NotFoundError);
    expect(callsTo(stack.mock, onA.id)).toHaveLength(calls);
  });

  it("while the creating agent is away the call gets a 503 (the other agent is never asked); once it is revoked, a 404", async () => {
    await agentB.stop();
    const client = openai(stack.apiKey);
    await waitFor(async () => ((await client.responses.retrieve(onB.id).catch((e: unknown) => e)) as { status?: number }).status === 503, 10_000);
    const away = await client.responses.retrieve(onB.id).catch((e: unknown) => e);
    expect(away).toBeInstanceOf(OpenAI.APIError);
    expect((away as InstanceType<typeof OpenAI.APIError>).message).toContain("not connected now");
    await stack.db.agent.update({ where: { id: agentBId }, data: { status: "revoked" } });
    const gone = await client.responses.retrieve(onB.id).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
    expect((gone as Error).message).toContain("no longer serves");
    expect(callsTo(stack.mock, onB.id)).toEqual([]);
  });
});
