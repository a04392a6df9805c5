/**
 * Several gateway processes on one machine (gateway/src/cluster.ts): `GATEWAY_PROCESSES=2` starts a primary and two
 * workers sharing the API and agent ports. The agent's tunnel lands on one worker; requests on fresh connections
 * are handed to both workers in turn, and those landing on the other worker are forwarded to the agent's worker
 * over a gateway link. Every request is served byte for byte and billed exactly once (one settled reservation, one
 * record naming the worker that took it, one agent receipt, the wallet down by exactly the charges). The admin
 * port's /metrics carries both workers' series. A worker killed with SIGKILL is forked again in its slot with the
 * same gateway id, and serves again.
 */
import { createHash } from "node:crypto";
import http from "node:http";
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

let database: TestDatabase;
let pool: pg.Pool;
let mock: MockProvider;
let gw: GatewayProc;
let agent: AgentProc;
let apiKey: string;
let userId: string;
const BASE_ID = newId("gw");
const WORKER_IDS = [`${BASE_ID}-0`, `${BASE_ID}-1`];

/** The primary's line for each worker that came up: slot, pid, gateway id. */
function workerLines(): { slot: number; pid: number; gatewayId: string }[] {
  return gw.lines.flatMap((l) => {
    const m = l.match(/^WELLSPRING_GATEWAY_WORKER slot=(\d+) pid=(\d+) gateway=(\S+)/);
    return m ? [{ slot: Number(m[1]), pid: Number(m[2]), gatewayId: m[3]! }] : [];
  });
}

interface Sent {
  status: number;
  requestId: string;
  sha256: string;
  tag: string;
}

/** One chat call on a connection of its own (no keep-alive), so the primary hands it to the next worker. */
function send(tag: string, stream: boolean): Promise<Sent> {
  const body = JSON.stringify({ model: "gpt-4o-mini", stream, messages: [{ role: "user", content: `[mock chunks=12 tag=${tag}]` }] });
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${gw.apiOrigin}/v1/chat/completions`,
      {
        method: "POST",
        agent: false,
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        const hash = createHash("sha256");
        res.on("data", (c: Buffer) => hash.update(c));
        res.on("end", () => resolve({ status: res.statusCode!, requestId: String(res.headers["x-wellspring-request-id"]), sha256: hash.digest("hex"), tag }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Sends `n` calls one after another, half streamed; each must be served byte for byte. */
async function sendMany(prefix: string, n: number): Promise<Sent[]> {
  const out: Sent[] = [];
  for (let i = 0; i < n; i++) {
    const sent = await send(`${prefix}${i}`, i % 2 === 0);
    expect(sent.status, sent.tag).toBe(200);
    const record = mock.requests.find((r) => r.tag === sent.tag);
    expect(record, sent.tag).toBeDefined();
    expect(sent.sha256, sent.tag).toBe(record!.responseSha256);
    out.push(sent);
  }
  return out;
}

/** Which gateway took each request (its record), once every record is written. */
async function takenBy(sent: Sent[]): Promise<Map<string, string>> {
  const ids = sent.map((s) => s.requestId);
  await waitFor(async () => (await pool.query("SELECT 1 FROM request_records WHERE id = ANY($1)", [ids])).rowCount === ids.length, 20_000);
  const rows = await pool.query<{ id: string; gateway_id: string; agent_id: string }>(
    "SELECT id, gateway_id, agent_id FROM request_records WHERE id = ANY($1)",
    [ids],
  );
  expect(rows.rows).toHaveLength(ids.length);
  for (const r of rows.rows) expect(r.agent_id).toBe(agent.agentId);
  return new Map(rows.rows.map((r) => [r.id, r.gateway_id]));
}

beforeAll(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 2 });
  await publishPriceVersion(database.db, DEFAULT_PRICE_TABLE, "test seed");
  mock = await startMockProvider();
  // Two workers start (and compile) side by side on a shared machine: give them longer than one gateway.
  gw = await startGatewayProc(database.url, { GATEWAY_ID: BASE_ID, GATEWAY_PROCESSES: "2" }, undefined, 120_000);
  const ownerId = newId("usr");
  userId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  await database.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  apiKey = (await issueKey(database.db, userId, "test")).secret;
  await fund(database.url, userId, 1_000_000_000n);
  const enrolled = await enrollAgent(database.db, gw, ownerId);
  agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
}, 240_000);

afterAll(async () => {
  await agent?.stop();
  await gw?.stop();
  await mock?.close();
  await pool?.end();
  await database?.drop();
});

describe("two gateway processes", () => {
  let holder = "";

  it("starts two workers, each a gateway of its own, and the agent's tunnel lands on one of them", async () => {
    const workers = workerLines();
    expect(workers.map((w) => w.slot).sort()).toEqual([0, 1]);
    expect(workers.map((w) => w.gatewayId).sort()).toEqual(WORKER_IDS);
    expect(new Set(workers.map((w) => w.pid)).size).toBe(2);
    await waitFor(async () => {
      const row = await database.db.agent.findUnique({ where: { id: agent.agentId }, select: { connectedGateway: true } });
      holder = row?.connectedGateway ?? "";
      return WORKER_IDS.includes(holder);
    }, 20_000);
    // Each worker announces a peer URL of its own (not the shared agent port), so links reach the right process.
    const peers = await pool.query<{ gateway_id: string; url: string }>("SELECT gateway_id, url FROM gateway_peers WHERE gateway_id = ANY($1)", [WORKER_IDS]);
    expect(peers.rows).toHaveLength(2);
    expect(new Set(peers.rows.map((p) => p.url)).size).toBe(2);
    for (const p of peers.rows) expect(p.url).not.toBe(gw.agentOrigin);
  }, 60_000);

  it("serves requests landing on both workers (forwarded from the other one to the agent's), billed exactly once each", async () => {
    // The agent's models must be routable from the worker that does not hold it (through its peer link).
    await waitFor(async () => {
      const checks = await Promise.all(Array.from({ length: 4 }, (_, i) => send(`probe${i}`, false)));
      return checks.every((c) => c.status === 200);
    }, 20_000);
    const before = await settledWallet(pool, userId);
    const sent = await sendMany("both", 16);
    const by = await takenBy(sent);
    const perWorker = WORKER_IDS.map((id) => [...by.values()].filter((g) => g === id).length);
    // Fresh connections go to the workers in turn: both took requests, so half were forwarded to the agent's worker.
    expect(perWorker[0]).toBeGreaterThan(0);
    expect(perWorker[1]).toBeGreaterThan(0);
    const ids = sent.map((s) => s.requestId);
    await waitFor(
      async () => (await pool.query("SELECT 1 FROM reservations WHERE request_id = ANY($1) AND status = 'settled'", [ids])).rowCount === ids.length,
      20_000,
    );
    const reservations = await pool.query<{ request_id: string; charge_micros: string; agent_id: string }>(
      "SELECT request_id, charge_micros, agent_id FROM reservations WHERE request_id = ANY($1)",
      [ids],
    );
    expect(reservations.rows).toHaveLength(ids.length);
    expect(new Set(reservations.rows.map((r) => r.request_id)).size).toBe(ids.length);
    const charged = reservations.rows.reduce((n, r) => n + BigInt(r.charge_micros), 0n);
    expect(charged).toBeGreaterThan(0n);
    const after = await settledWallet(pool, userId, 20_000);
    expect(before.available - after.available).toBe(charged);
    // The agent signed one receipt per request, whichever worker took it.
    await waitFor(async () => (await pool.query("SELECT 1 FROM agent_receipts WHERE request_id = ANY($1)", [ids])).rowCount === ids.length, 20_000);
    const receipts = await pool.query<{ request_id: string; charge_micros: string }>(
      "SELECT request_id, charge_micros FROM agent_receipts WHERE request_id = ANY($1)",
      [ids],
    );
    expect(receipts.rows).toHaveLength(ids.length);
    const charges = new Map(reservations.rows.map((r) => [r.request_id, r.charge_micros]));
    for (const r of receipts.rows) expect(r.charge_micros).toBe(charges.get(r.request_id));
  }, 120_000);

  it("gathers both workers' metrics on the admin port", async () => {
    const text = await (await fetch(`${gw.adminOrigin}/metrics`)).text();
    expect(text).toMatch(/^wellspring_gateway_workers 2$/m);
    for (const slot of ["0", "1"]) expect(text).toMatch(new RegExp(`^wellspring_requests_total\\{[^}]*worker="${slot}"[^}]*\\} \\d+`, "m"));
    expect(text).toMatch(new RegExp(`^wellspring_agents_connected\\{worker="${WORKER_IDS.indexOf(holder)}"\\} 1$`, "m"));
  }, 30_000);

  it("restarts a killed worker in its slot, with its gateway id, and it serves again", async () => {
    // The worker that does not hold the agent: the agent keeps its tunnel, and the restarted worker must reach it again.
    const slot = WORKER_IDS.indexOf(holder) === 0 ? 1 : 0;
    const victim = workerLines().find((w) => w.slot === slot)!;
    process.kill(victim.pid, "SIGKILL");
    await waitFor(() => workerLines().some((w) => w.slot === slot && w.pid !== victim.pid), 90_000);
    const text = await (await fetch(`${gw.adminOrigin}/metrics`)).text();
    expect(text).toMatch(/^wellspring_gateway_worker_restarts_total 1$/m);
    await waitFor(async () => {
      const checks = await Promise.all(Array.from({ length: 4 }, (_, i) => send(`again${i}`, false)));
      return checks.every((c) => c.status === 200);
    }, 30_000);
    const sent = await sendMany("restarted", 8);
    const by = await takenBy(sent);
    expect([...by.values()].filter((g) => g === WORKER_IDS[slot]).length).toBeGreaterThan(0);
    expect([...by.values()].filter((g) => g === holder).length).toBeGreaterThan(0);
  }, 150_000);
});
