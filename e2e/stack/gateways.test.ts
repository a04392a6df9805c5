/**
 * Several gateways (gateway/src/peers/): two gateway processes share PostgreSQL and Redis; agent X is connected
 * to gateway A, agent Y — through a TCP "load balancer" — to gateway B, each serving its own models behind its
 * own mock provider. Every request to either gateway for any model is served, byte for byte, through a gateway
 * link when the agent is on the other gateway; a client's abort at A reaches B's agent's provider within 100 ms;
 * a forwarded request is settled once (one reservation, one record at A, one receipt from the agent at B).
 * Killing B: the load balancer sends Y to A, and traffic for Y's models recovers without operator action.
 */
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE, newId, publishPriceVersion } from "@wellspring/db";
import { issueKey } from "@wellspring/gateway";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import {
  createTestDatabase,
  enrollAgent,
  fund,
  settledWallet,
  startAgentProc,
  startGatewayProc,
  waitFor,
  type AgentProc,
  type GatewayProc,
  type TestDatabase,
} from "./harness.ts";
import { startTcpProxy, type TcpProxy } from "./tcp_proxy.ts";

const find = promisify(execFile);

let database: TestDatabase;
let pool: pg.Pool;
let mockX: MockProvider;
let mockY: MockProvider;
let gwA: GatewayProc;
let gwB: GatewayProc;
let balancer: TcpProxy;
let agentX: AgentProc;
let agentY: AgentProc;
let apiKey: string;
let userId: string;
const GATEWAY_A = newId("gw");
const GATEWAY_B = newId("gw");

/** Which agent serves which models: X on gateway A, Y on gateway B. */
const MODELS_X = { openai: ["gpt-4o-mini"], anthropic: ["claude-sonnet-4-5"] };
const MODELS_Y = { openai: ["gpt-4o"], anthropic: ["claude-haiku-4-5"] };

const hostPort = (origin: string) => {
  const u = new URL(origin);
  return { host: u.hostname, port: Number(u.port) };
};

/** The models a gateway lists, both API families (an `anthropic-version` header asks for the Anthropic one). */
async function listedModels(gw: GatewayProc): Promise<string[]> {
  const out: string[] = [];
  for (const headers of [{}, { "anthropic-version": "2023-06-01" }] as Record<string, string>[]) {
    const res = await fetch(`${gw.apiOrigin}/v1/models`, { headers: { authorization: `Bearer ${apiKey}`, ...headers } });
    out.push(...(((await res.json()) as { data?: { id: string }[] }).data?.map((m) => m.id) ?? []));
  }
  return out;
}

const ALL_MODELS = [...MODELS_X.openai, ...MODELS_X.anthropic, ...MODELS_Y.openai, ...MODELS_Y.anthropic];

beforeAll(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 2 });
  await publishPriceVersion(database.db, DEFAULT_PRICE_TABLE, "test seed");
  mockX = await startMockProvider();
  mockY = await startMockProvider();
  gwA = await startGatewayProc(database.url, { GATEWAY_ID: GATEWAY_A });
  // Gateways behind one agent address share the tunnel's TLS key (agents pin it), as in production.
  const certs = (await find("find", [gwA.dataDir, "-name", "tunnel-*.pem"])).stdout.trim().split("\n");
  const cert = certs.find((f) => f.endsWith("tunnel-cert.pem"))!;
  const key = certs.find((f) => f.endsWith("tunnel-key.pem"))!;
  gwB = await startGatewayProc(database.url, { GATEWAY_ID: GATEWAY_B, HUB_ID: gwA.hubId, TLS_CERT_FILE: cert, TLS_KEY_FILE: key });
  expect(gwB.pin).toBe(gwA.pin);
  balancer = await startTcpProxy(hostPort(gwB.agentOrigin));

  const ownerId = newId("usr");
  userId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  await database.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  apiKey = (await issueKey(database.db, userId, "test")).secret;
  await fund(database.url, userId, 1_000_000_000n);

  const x = await enrollAgent(database.db, gwA, ownerId, { models: MODELS_X });
  const y = await enrollAgent(database.db, gwA, ownerId, { models: MODELS_Y });
  // Y dials the load balancer, which sends it to B.
  const identityFile = join(y.dataDir, "agent.json");
  const identity = JSON.parse(await readFile(identityFile, "utf8")) as Record<string, unknown>;
  await writeFile(identityFile, JSON.stringify({ ...identity, hubUrl: `https://127.0.0.1:${balancer.port}` }));
  agentX = await startAgentProc(x.dataDir, x.agentId, mockX.origin);
  agentY = await startAgentProc(y.dataDir, y.agentId, mockY.origin);
  const holders = await database.db.agent.findMany({ where: { id: { in: [x.agentId, y.agentId] } }, select: { id: true, connectedGateway: true } });
  expect(Object.fromEntries(holders.map((h) => [h.id, h.connectedGateway]))).toEqual({ [x.agentId]: GATEWAY_A, [y.agentId]: GATEWAY_B });
  // Each gateway lists every model, its own agent's and the other gateway's.
  await waitFor(async () => {
    const [a, b] = await Promise.all([listedModels(gwA), listedModels(gwB)]);
    return ALL_MODELS.every((m) => a.includes(m) && b.includes(m));
  }, 20_000);
}, 240_000);

afterAll(async () => {
  for (const p of [agentX, agentY, gwA, gwB]) await p?.stop();
  await balancer?.close();
  await mockX?.close();
  await mockY?.close();
  await pool?.end();
  await database?.drop();
});

interface Sent {
  status: number;
  requestId: string;
  sha256: string;
  bytes: number;
}

/** One request through `gw` in the model's own API, read whole; `tag` marks it at the mock. */
async function send(gw: GatewayProc, model: string, directive: string, stream: boolean): Promise<Sent> {
  const anthropic = model.startsWith("claude");
  const body = anthropic
    ? { model, max_tokens: 200, stream, messages: [{ role: "user", content: `[mock ${directive}]` }] }
    : { model, stream, messages: [{ role: "user", content: `[mock ${directive}]` }] };
  const res = await fetch(`${gw.apiOrigin}${anthropic ? "/v1/messages" : "/v1/chat/completions"}`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json", ...(anthropic ? { "anthropic-version": "2023-06-01" } : {}) },
    body: JSON.stringify(body),
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  return {
    status: res.status,
    requestId: res.headers.get("x-wellspring-request-id")!,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    bytes: bytes.length,
  };
}

const mockOf = (model: string) => ([...MODELS_X.openai, ...MODELS_X.anthropic].includes(model) ? mockX : mockY);

describe("several gateways", () => {
  it("serves every model through either gateway, streamed and whole, byte for byte", async () => {
    for (const gw of [gwA, gwB]) {
      for (const model of ALL_MODELS) {
        for (const stream of [true, false]) {
          const tag = `t${createHash("sha256").update(`${gw.apiOrigin}${model}${stream}`).digest("hex").slice(0, 12)}`;
          const sent = await send(gw, model, `chunks=40 tag=${tag}`, stream);
          expect(sent.status, `${model} via ${gw === gwA ? "A" : "B"}`).toBe(200);
          const record = mockOf(model).requests.find((r) => r.tag === tag)!;
          expect(record).toBeDefined();
          expect(sent.sha256).toBe(record.responseSha256);
        }
      }
    }
  }, 60_000);

  it("a forwarded 8 MB response arrives whole through both gateways' windows", async () => {
    const sent = await send(gwA, "gpt-4o", "chunks=64 bytes=8388608 tag=big", false);
    expect(sent.status).toBe(200);
    const record = mockY.requests.find((r) => r.tag === "big")!;
    expect(sent.bytes).toBe(record.responseBytes);
    expect(sent.sha256).toBe(record.responseSha256);
  }, 60_000);

  it("a forwarded request is settled once: one reservation, one record at the forwarding gateway, one receipt from the agent", async () => {
    const before = await settledWallet(pool, userId);
    const sent = await send(gwA, "claude-haiku-4-5", "chunks=10 tag=billed", true);
    expect(sent.status).toBe(200);
    // Settlements are written in batches: wait for this one, then count.
    await waitFor(async () => (await pool.query("SELECT 1 FROM reservations WHERE request_id = $1 AND status = 'settled'", [sent.requestId])).rowCount === 1);
    const reservations = await pool.query<{ charge_micros: string; agent_id: string }>(
      "SELECT charge_micros, agent_id FROM reservations WHERE request_id = $1",
      [sent.requestId],
    );
    expect(reservations.rows).toHaveLength(1);
    expect(reservations.rows[0]!.agent_id).toBe(agentY.agentId);
    const charge = BigInt(reservations.rows[0]!.charge_micros);
    expect(charge).toBeGreaterThan(0n);
    const after = await settledWallet(pool, userId);
    expect(before.available - after.available).toBe(charge);
    await waitFor(async () => (await pool.query("SELECT 1 FROM request_records WHERE id = $1", [sent.requestId])).rowCount === 1);
    const records = await pool.query<{ gateway_id: string; agent_id: string }>("SELECT gateway_id, agent_id FROM request_records WHERE id = $1", [
      sent.requestId,
    ]);
    expect(records.rows).toEqual([{ gateway_id: GATEWAY_A, agent_id: agentY.agentId }]);
    // The settlement statement crossed the link: the agent at B signed a receipt for exactly this charge.
    await waitFor(async () => (await pool.query("SELECT 1 FROM agent_receipts WHERE request_id = $1", [sent.requestId])).rowCount === 1, 10_000);
    const receipt = await pool.query<{ agent_id: string; charge_micros: string }>("SELECT agent_id, charge_micros FROM agent_receipts WHERE request_id = $1", [
      sent.requestId,
    ]);
    expect(receipt.rows).toEqual([{ agent_id: agentY.agentId, charge_micros: charge.toString() }]);
  }, 30_000);

  it("a client that disconnects mid-stream at A makes the provider behind B's agent see the cancel within 100 ms", async () => {
    const controller = new AbortController();
    const res = fetch(`${gwA.apiOrigin}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o", stream: true, messages: [{ role: "user", content: "[mock chunks=1000 delay_ms=20 tag=abort]" }] }),
      signal: controller.signal,
    });
    // The only request open at Y's provider (its tag is read after the mock's first notice, so it is not matched on).
    const seen = await mockY.waitForRequest((r) => r.requestBytes > 0 && r.finishedAt === null && r.cancelledAt === null, 5000);
    const reader = (await res).body!.getReader();
    await reader.read();
    await reader.read();
    const abortedAt = Date.now();
    controller.abort();
    const cancelled = await mockY.waitForCancel((r) => r.id === seen.id, 2000);
    const latency = cancelled.cancelledAt! - abortedAt;
    console.log(`forwarded cancel: the provider saw it ${latency.toFixed(1)} ms after the client closed at gateway A`);
    expect(latency).toBeLessThan(100);
  }, 20_000);

  it("killing gateway B: its agent reconnects to A through the load balancer and its models are served again", async () => {
    const killedAt = Date.now();
    await gwB.stop("SIGKILL"); // the whole process group: tsx and the gateway under it
    balancer.retarget(hostPort(gwA.agentOrigin));
    balancer.cut(); // the balancer drops B's connections at once (the agent sees its tunnel go)
    balancer.restore();
    let recoveredAt = 0;
    await waitFor(async () => {
      const [openai, anthropic] = await Promise.all([send(gwA, "gpt-4o", "chunks=3", true), send(gwA, "claude-haiku-4-5", "chunks=3", false)]);
      if (openai.status === 200 && anthropic.status === 200) recoveredAt = Date.now();
      return recoveredAt > 0;
    }, 30_000);
    console.log(`gateway B killed: its agent's models served by A again after ${recoveredAt - killedAt} ms`);
    expect((await database.db.agent.findUnique({ where: { id: agentY.agentId } }))!.connectedGateway).toBe(GATEWAY_A);
    // B's directory row runs out (no operator removes it): no gateway forwards to it any more.
    await waitFor(
      async () => (await pool.query("SELECT 1 FROM gateway_peers WHERE gateway_id = $1 AND expires_at > now()", [GATEWAY_B])).rowCount === 0,
      10_000,
    );
    for (const model of ALL_MODELS) expect((await send(gwA, model, "chunks=2", true)).status).toBe(200);
  }, 60_000);
});
