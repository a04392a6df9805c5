/**
 * The edge ledger through the whole stack: a real gateway, a real Deno agent under its launcher (with its own
 * permission flags) and the mock provider. Every settled request the agent served comes back as a signed receipt
 * in the agent's ledger and, countersigned, in the hub's; the owner's `./wellspring-agent ledger verify|export`
 * and the operator's `npm run admin -- ledger verify --agent ID` agree; kill -9 of the agent under traffic
 * (LEDGER_FAULT_CYCLES times, default 3) leaves both chains identical, with no receipt twice and the audit clean.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import OpenAI from "openai";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeLogRecords, decodeReceipt, receiptHash } from "@wellspring/protocol";
import { AGENT_LAUNCHER, ROOT, startAgentProc, startStack, TSX, waitFor, type Stack } from "./harness.ts";

const run = promisify(execFile);
const CYCLES = Number(process.env.LEDGER_FAULT_CYCLES ?? 3);
const REQUESTS_PER_CYCLE = 12;

let stack: Stack;
let pool: pg.Pool;
beforeAll(async () => {
  stack = await startStack({ gatewayEnv: { BILLING_ENABLED: "1" } });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
}, 120_000);
afterAll(async () => {
  await pool?.end();
  await stack?.close();
});

function client() {
  return new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
}

async function hubRows() {
  return (
    await pool.query<{ seq: number; request_id: string; body: Buffer; hash: Buffer; charge_micros: string; r_charge: string | null; r_agent: string | null }>(
      `SELECT a.seq, a.request_id, a.body, a.hash, a.charge_micros::text, r.charge_micros::text AS r_charge, r.agent_id AS r_agent
         FROM agent_receipts a LEFT JOIN reservations r ON r.request_id = a.request_id WHERE a.agent_id = $1 ORDER BY a.seq`,
      [stack.agent.agentId],
    )
  ).rows;
}

async function agentExport(): Promise<Uint8Array> {
  const out = await run(AGENT_LAUNCHER, ["ledger", "export", "--data", stack.agent.dataDir], { cwd: ROOT, encoding: "buffer", maxBuffer: 64 << 20 });
  return new Uint8Array(out.stdout);
}

async function agentVerify(): Promise<string> {
  const out = await run(AGENT_LAUNCHER, ["ledger", "verify", "--data", stack.agent.dataDir], { cwd: ROOT });
  return out.stdout;
}

/** Both chains, once the agent has nothing left unacknowledged: the same receipts, byte for byte. */
async function expectChainsIdentical(): Promise<number> {
  await waitFor(async () => /(\d+) of \1 receipts acknowledged/.test(await agentVerify()), 30_000);
  const records = decodeLogRecords(await agentExport()).records;
  const rows = await hubRows();
  expect(rows.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
  for (const [i, rec] of records.entries()) {
    expect(Buffer.from(rec.body).equals(rows[i]!.body)).toBe(true);
    expect(Buffer.from(await receiptHash(rec.body)).equals(rows[i]!.hash)).toBe(true);
    // Every receipt confirms the hub's own settlement of a request dispatched to this agent.
    expect(rows[i]!.r_agent).toBe(stack.agent.agentId);
    expect(decodeReceipt(rec.body).chargeMicros.toString()).toBe(rows[i]!.r_charge);
  }
  expect(new Set(rows.map((r) => r.request_id)).size).toBe(rows.length);
  return rows.length;
}

describe("edge ledger through the stack", () => {
  it("every settled request the agent served is a receipt on both sides; both verifiers agree", async () => {
    const openai = client();
    for (let i = 0; i < 8; i++) await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `hello ${i}` }] });
    await waitFor(async () => (await hubRows()).length === 8, 15_000);
    expect(await expectChainsIdentical()).toBe(8);
    expect(await agentVerify()).toMatch(/database: 8 receipts, chain whole \(tail 8\)[\s\S]*\nOK\n/);
    const admin = await run(TSX, ["gateway/src/cli/admin.ts", "ledger", "verify", "--agent", stack.agent.agentId], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: stack.database.url, DATA_DIR: stack.gateway.dataDir },
    });
    expect(admin.stdout).toMatch(new RegExp(`agent ${stack.agent.agentId}: 8 receipts, chain whole, countersignatures verify; hub tail 8 [0-9a-f]{64}`));
    // The agent reported its tail after the handshake, and it equals the hub's.
    const row = await pool.query<{ ledger_tail_seq: number | null }>("SELECT ledger_tail_seq FROM agents WHERE id = $1", [stack.agent.agentId]);
    expect(row.rows[0]!.ledger_tail_seq).not.toBeNull();
    const flags = await pool.query("SELECT kind FROM risk_flags WHERE subject = $1", [`agent:${stack.agent.agentId}`]);
    expect(flags.rows).toEqual([]);
  }, 120_000);

  it(`kill -9 of the agent under traffic, ${CYCLES} times: chains identical, every receipt matching a settlement and none twice, the audit clean`, async () => {
    const openai = client();
    let served = 0;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const calls = Array.from({ length: REQUESTS_PER_CYCLE }, (_, i) =>
        openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `cycle ${cycle} call ${i}` }] }).then(
          () => 1,
          () => 0,
        ),
      );
      // The agent dies at a random moment while the burst is in flight or being receipted.
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 700));
      await stack.agent.stop("SIGKILL");
      served += (await Promise.all(calls)).reduce((a: number, b: number) => a + b, 0);
      stack.agent = await startAgentProc(stack.agent.dataDir, stack.agent.agentId, stack.mock.origin);
      await stack.waitForModel("gpt-4o-mini", 30_000);
    }
    // Traffic after the last restart settles and is receipted as usual.
    for (let i = 0; i < 4; i++) await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `after ${i}` }] });
    // Settlements that moved money for a request dispatched to this agent get their receipt, the ones whose statement
    // died with a connection too (the hub sends them again after the handshake; the agent kept the stream).
    const settledCount = async () =>
      (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM reservations WHERE agent_id = $1 AND status = 'settled'", [stack.agent.agentId]))
        .rows[0]!.n;
    await waitFor(async () => (await hubRows()).length === (await settledCount()), 30_000).catch(() => undefined);
    const receipts = await expectChainsIdentical();
    const settled = await settledCount();
    console.log(
      `edge ledger faults: ${CYCLES} kill -9 cycles, ${served} calls answered during them, ${settled} settlements that moved money for the agent, ${receipts} receipts on both sides`,
    );
    // Not yet every one: over 30 cycles 361 of 372 had their receipt (docs/ARCHITECTURE.md, "Known limits").
    expect(receipts).toBeLessThanOrEqual(settled);
    expect(receipts).toBeGreaterThanOrEqual(8 + 4);
    const audit = await run(TSX, ["gateway/src/cli/admin.ts", "audit"], { cwd: ROOT, env: { ...process.env, DATABASE_URL: stack.database.url } });
    expect(audit.stdout).toMatch(/ledger audit ok/);
  }, 600_000);
});
