/**
 * Failover before the first byte and circuit breakers, through real processes: two Deno agents (each with its
 * own mock provider), the preferred one (tier S) failing. A 500, a 429 and a dropped provider connection before
 * the first byte are served by the other agent and billed once, to it; after ROUTING_BREAKER_FAILURES of them
 * the failing agent's breaker opens and it gets no traffic; its half-open probe failing mid-stream gives the
 * user the partial stream and an error with no second upstream call; an agent killed before answering is
 * replaced by the other one.
 */
import OpenAI from "openai";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE, newId, publishPriceVersion } from "@wellspring/db";
import { liveBreakers } from "@wellspring/gateway";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { enrollAgent, startAgentProc, startStack, waitFor, type AgentProc, type Stack } from "./harness.ts";

let stack: Stack;
let pool: pg.Pool;
let mockA: MockProvider;
let agentA: AgentProc;
let ownerA: string;
let client: OpenAI;

async function metric(name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${stack.gateway.adminOrigin}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(" ")[1]) : 0;
}

/** The request's reservation (one row per request id: its primary key) once settled. */
async function settledReservation(requestId: string): Promise<{ agent_id: string; owner_id: string; charge_micros: string; end_cause: string }> {
  let row: { agent_id: string; owner_id: string; charge_micros: string; end_cause: string; status: string } | undefined;
  await waitFor(async () => {
    const r = await pool.query("SELECT agent_id, owner_id, charge_micros, end_cause, status FROM reservations WHERE request_id = $1", [requestId]);
    row = r.rows[0] as typeof row;
    return row?.status === "settled";
  });
  return row!;
}

async function recordsOf(requestId: string): Promise<{ agent_id: string; http_status: number }[]> {
  let rows: { agent_id: string; http_status: number }[] = [];
  await waitFor(async () => {
    rows = (await pool.query("SELECT agent_id, http_status FROM request_records WHERE id = $1", [requestId])).rows as typeof rows;
    return rows.length > 0;
  });
  return rows;
}

beforeAll(async () => {
  stack = await startStack({
    gatewayEnv: { BILLING_ENABLED: "1", ROUTING_BREAKER_FAILURES: "3", ROUTING_BREAKER_OPEN_MS: "1500" },
    beforeAgent: async (db) => void (await publishPriceVersion(db, DEFAULT_PRICE_TABLE, "test seed")),
  });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 2 });
  pool.on("error", () => {});
  ownerA = newId("usr");
  await stack.db.user.create({ data: { id: ownerA, email: `${ownerA}@owner.test`, isOwner: true } });
  mockA = await startMockProvider();
  const enrolled = await enrollAgent(stack.db, stack.gateway, ownerA);
  // Tier S: routing tries it before the stack's tier A agent every time its breaker lets it.
  await stack.db.agent.update({ where: { id: enrolled.agentId }, data: { tier: "S" } });
  agentA = await startAgentProc(enrolled.dataDir, enrolled.agentId, mockA.origin);
  await waitFor(async () => (await metric("wellspring_agents_connected")) === 2, 20_000);
  client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
}, 180_000);

afterAll(async () => {
  await agentA?.stop();
  await mockA?.close();
  await pool?.end();
  await stack?.close();
});

describe("failover before the first byte", () => {
  it("a 500 from the preferred agent's provider: served by the other agent, billed once, to it", async () => {
    mockA.fault = { kind: "status", status: 500 };
    const [aBefore, bBefore] = [mockA.requests.length, stack.mock.requests.length];
    const { data, response } = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] }).withResponse();
    expect(response.status).toBe(200);
    expect(data.choices[0]!.message.content).toContain("w0");
    expect(mockA.requests.slice(aBefore).map((r) => r.status)).toEqual([500]);
    expect(stack.mock.requests.slice(bBefore).map((r) => r.status)).toEqual([200]);
    const requestId = response.headers.get("x-wellspring-request-id")!;
    const reservation = await settledReservation(requestId);
    expect(reservation.agent_id).toBe(stack.agent.agentId);
    expect(reservation.owner_id).toBe(stack.ownerId);
    expect(BigInt(reservation.charge_micros)).toBeGreaterThan(0n);
    expect(await recordsOf(requestId)).toEqual([{ agent_id: stack.agent.agentId, http_status: 200 }]);
  });

  it("a 429 before a streamed answer: the stream comes whole from the other agent", async () => {
    mockA.fault = { kind: "status", status: 429 };
    const bBefore = stack.mock.requests.length;
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "[mock chunks=8]" }],
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe("w0 w1 w2 w3 w4 w5 w6 w7 ");
    expect(stack.mock.requests.slice(bBefore).map((r) => r.status)).toEqual([200]);
    expect(await metric("wellspring_breakers", '{state="open"}')).toBe(0);
  });

  it("a provider connection dropped before the head: served elsewhere; the third failure opens the breaker", async () => {
    // Agent A honours its provider's last 429 (retry-after: 1 s) by refusing calls itself meanwhile (RATE_LIMITED,
    // which its breaker does not count): wait it out, so this call reaches A's provider.
    await new Promise((r) => setTimeout(r, 1_100));
    mockA.fault = { kind: "drop" };
    const { response } = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }).withResponse();
    expect(response.status).toBe(200);
    expect((await settledReservation(response.headers.get("x-wellspring-request-id")!)).agent_id).toBe(stack.agent.agentId);
    expect(await metric("wellspring_breakers", '{state="open"}')).toBe(1);
    expect(await metric("wellspring_routing_attempts_total", '{result="failed_over"}')).toBe(3);
    // What the owner's and the admin's agent pages read: the gateway wrote the open breaker.
    await waitFor(async () => (await liveBreakers(stack.db, [agentA.agentId, stack.agent.agentId])).length === 1);
    expect(await liveBreakers(stack.db, [agentA.agentId, stack.agent.agentId])).toMatchObject([
      { agentId: agentA.agentId, model: "gpt-4o-mini", state: "open" },
    ]);
  });

  it("an open breaker keeps traffic off the failing agent", async () => {
    const aBefore = mockA.requests.length;
    for (let i = 0; i < 3; i++) {
      const r = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "again" }] });
      expect(r.choices[0]!.message.content).toContain("w0");
    }
    expect(mockA.requests.length).toBe(aBefore);
  });

  it("a half-open probe that fails mid-stream: partial stream, an error, no second upstream call; the breaker opens again", async () => {
    await waitFor(async () => (await metric("wellspring_breakers", '{state="half_open"}')) === 1, 10_000);
    // The head and two body writes reach the user, then the provider's connection dies.
    mockA.fault = { kind: "cut", afterWrites: 2 };
    const bBefore = stack.mock.requests.length;
    const res = await fetch(`${stack.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "[mock chunks=20 delay_ms=20]" }] }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let received = "";
    const error = await (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return null;
          received += new TextDecoder().decode(value);
        }
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error).not.toBeNull(); // truncated, never a forged ending
    expect(received).toContain('"content":"w0 "');
    expect(received).not.toContain("[DONE]");
    expect(stack.mock.requests.length).toBe(bBefore);
    const requestId = res.headers.get("x-wellspring-request-id")!;
    const reservation = await settledReservation(requestId);
    expect(reservation.agent_id).toBe(agentA.agentId);
    expect(reservation.owner_id).toBe(ownerA);
    expect(await metric("wellspring_breakers", '{state="open"}')).toBe(1);
  });

  it("an agent killed before answering: the request is served by the other agent", async () => {
    mockA.fault = null;
    await waitFor(async () => (await metric("wellspring_breakers", '{state="half_open"}')) === 1, 10_000);
    const pending = client.chat.completions
      .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "[mock first_delay_ms=3000] slow" }] })
      .withResponse();
    await mockA.waitForRequest((r) => r.cancelledAt === null && r.finishedAt === null && r.startedAt > Date.now() - 5_000, 10_000);
    const bBefore = stack.mock.requests.length;
    await agentA.stop("SIGKILL");
    const { data, response } = await pending;
    expect(response.status).toBe(200);
    expect(data.choices[0]!.message.content).toContain("w0");
    expect(stack.mock.requests.length).toBe(bBefore + 1);
    expect((await settledReservation(response.headers.get("x-wellspring-request-id")!)).agent_id).toBe(stack.agent.agentId);
  });
});
