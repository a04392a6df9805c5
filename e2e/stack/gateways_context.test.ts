/**
 * Context windows across gateways: agent Y, on gateway B, is behind a provider whose models hold 2,000 tokens
 * (its model list says so; the agent reports it, and B writes it with Y's inventory). Gateway A, which holds no
 * agent for the model, forwards a short request to Y, and answers an over-long one itself with a 400
 * `context_length_exceeded` in the API's shape: it is never sent to an agent that cannot hold it.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { issueKey } from "@wellspring/gateway";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { createTestDatabase, enrollAgent, startAgentProc, startGatewayProc, waitFor, type AgentProc, type GatewayProc, type TestDatabase } from "./harness.ts";

const find = promisify(execFile);
const SMALL_WINDOW_TOKENS = 2_000;
/** About 3,000 tokens at the hub's 4 bytes per token: more than the small window holds. */
const LONG_TEXT = "word ".repeat(2_400);

let database: TestDatabase;
let mockY: MockProvider;
let gwA: GatewayProc;
let gwB: GatewayProc;
let agentY: AgentProc;
let apiKey: string;
let agentYId: string;
const GATEWAY_A = newId("gw");
const GATEWAY_B = newId("gw");

beforeAll(async () => {
  database = await createTestDatabase();
  mockY = await startMockProvider({ contextTokens: SMALL_WINDOW_TOKENS });
  gwA = await startGatewayProc(database.url, { GATEWAY_ID: GATEWAY_A, BILLING_ENABLED: "0" });
  // Gateways behind one agent address share the tunnel's TLS key (agents pin it), as in production.
  const certs = (await find("find", [gwA.dataDir, "-name", "tunnel-*.pem"])).stdout.trim().split("\n");
  gwB = await startGatewayProc(database.url, {
    GATEWAY_ID: GATEWAY_B,
    HUB_ID: gwA.hubId,
    TLS_CERT_FILE: certs.find((f) => f.endsWith("tunnel-cert.pem"))!,
    TLS_KEY_FILE: certs.find((f) => f.endsWith("tunnel-key.pem"))!,
    BILLING_ENABLED: "0",
  });
  const ownerId = newId("usr");
  const userId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  await database.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  apiKey = (await issueKey(database.db, userId, "test")).secret;
  const y = await enrollAgent(database.db, gwB, ownerId, { models: { openai: ["gpt-4o-mini"], anthropic: ["claude-haiku-4-5"] } });
  agentYId = y.agentId;
  agentY = await startAgentProc(y.dataDir, y.agentId, mockY.origin);
  // B writes the window Y reported with its inventory; A reads it with Y's presence.
  await waitFor(async () => {
    const row = await database.db.agent.findUnique({ where: { id: agentYId }, select: { contextWindows: true, connectedGateway: true } });
    return row?.connectedGateway === GATEWAY_B && (row.contextWindows as Record<string, number>)["openai:gpt-4o-mini"] === SMALL_WINDOW_TOKENS;
  }, 30_000);
}, 240_000);

afterAll(async () => {
  for (const p of [agentY, gwA, gwB]) await p?.stop();
  await mockY?.close();
  await database?.drop();
});

describe("a forwarding gateway knows the context windows of the other gateways' agents", () => {
  it("forwards a request that fits and refuses one that cannot fit without sending it", async () => {
    const client = new OpenAI({ baseURL: `${gwA.apiOrigin}/v1`, apiKey, maxRetries: 0 });
    // The directory read (every 500 ms) brings Y to A: a short request is forwarded to it.
    await waitFor(async () => {
      const ok = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "short" }] }).catch(() => null);
      return ok !== null;
    }, 20_000);
    const before = mockY.requests.length;
    const error = await client.chat.completions
      .create({ model: "gpt-4o-mini", max_tokens: 100, messages: [{ role: "user", content: LONG_TEXT }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("context_length_exceeded");
    expect((error as Error).message).toContain("context window of every agent serving 'gpt-4o-mini'");
    expect(mockY.requests.length).toBe(before);
    // A request that fits still goes through.
    const fits = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "short again" }] });
    expect(fits.choices[0]!.message.content).toContain("w0");
    expect(mockY.requests.length).toBe(before + 1);
  });
});
