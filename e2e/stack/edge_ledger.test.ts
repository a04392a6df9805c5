/**
 * The edge ledger through the whole stack: a real gateway, a real Deno agent under its launcher (with its own
 * permission flags) and the mock provider. Every settled request the agent served comes back as a signed receipt
 * in the agent's ledger and, countersigned, in the hub's; the owner's `./wellspring-agent ledger verify|export`
 * and the operator's `npm run admin -- ledger verify --agent ID` agree. The fault script: LEDGER_FAULT_CYCLES
 * (default 6) random faults under traffic — kill -9 of the agent, kill -9 of the gateway, a network cut between
 * them — leave both chains identical, every settlement that moved money with exactly one receipt, nothing held,
 * and the audit clean but for the settlements a killed gateway never wrote (Known limits).
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeLogRecords, decodeReceipt, receiptHash } from "@wellspring/protocol";
import { AGENT_LAUNCHER, ROOT, startAgentProc, startGatewayProc, startStack, TSX, waitFor, type Stack } from "./harness.ts";
import { startTcpProxy } from "./tcp_proxy.ts";
import { Ledger } from "../../gateway/src/billing/ledger.ts";

const run = promisify(execFile);
const CYCLES = Number(process.env.LEDGER_FAULT_CYCLES ?? 6);
const REQUESTS_PER_CYCLE = 12;
const FAULTS = ["agent", "gateway", "network"] as const;
/** Short lease and tail intervals, so a killed gateway's holds go back and lost statements are offered again within the test. */
const GATEWAY_ENV = {
  BILLING_ENABLED: "1",
  BILLING_LEASE_RENEW_INTERVAL_MS: "200",
  BILLING_LEASE_VALID_MS: "1000",
  BILLING_GATEWAY_DEAD_AFTER_MS: "2000",
  LEDGER_TAIL_INTERVAL_MS: "1000",
};

let stack: Stack;
let pool: pg.Pool;
beforeAll(async () => {
  stack = await startStack({ gatewayEnv: GATEWAY_ENV });
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

async function restartAgent(signal: NodeJS.Signals): Promise<void> {
  await stack.agent.stop(signal);
  stack.agent = await startAgentProc(stack.agent.dataDir, stack.agent.agentId, stack.mock.origin);
}

/** kill -9 of the gateway, then a new one on the same ports and data folder (its spool, its receipt key). */
async function restartGateway(): Promise<void> {
  const { apiOrigin, agentOrigin, dataDir } = stack.gateway;
  await stack.gateway.stop("SIGKILL");
  stack.gateway = await startGatewayProc(
    stack.database.url,
    { ...GATEWAY_ENV, GATEWAY_PORT: new URL(apiOrigin).port, AGENT_PORT: new URL(agentOrigin).port },
    dataDir,
  );
}

async function held(): Promise<number> {
  return (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM reservations WHERE status = 'held'")).rows[0]!.n;
}

/** Settlements that moved money (a charge or an earning) for requests this agent served. */
async function moneySettlements(): Promise<number> {
  return (
    await pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM reservations WHERE agent_id = $1 AND status = 'settled' AND (charge_micros > 0 OR earning_micros > 0)",
      [stack.agent.agentId],
    )
  ).rows[0]!.n;
}

/** Those without a receipt at the hub (lost, as far as the owner's proof goes). */
async function unreceipted(): Promise<{ request_id: string; end_cause: string }[]> {
  return (
    await pool.query<{ request_id: string; end_cause: string }>(
      `SELECT r.request_id, r.end_cause::text FROM reservations r
        WHERE r.agent_id = $1 AND r.status = 'settled' AND (r.charge_micros > 0 OR r.earning_micros > 0)
          AND NOT EXISTS (SELECT 1 FROM agent_receipts a WHERE a.request_id = r.request_id)`,
      [stack.agent.agentId],
    )
  ).rows;
}

/** Both chains, once the agent has nothing left unacknowledged: the same receipts, byte for byte. */
/**
 * What a failed run leaves to read (the database is dropped with the stack): the unreceipted settlements' span
 * and end causes, the hub's tail and newest receipt, and the agent's own account of its chain.
 */
async function diagnosis(): Promise<string> {
  const span = await pool.query(
    `SELECT count(*)::int AS n, min(r.settled_at) AS first, max(r.settled_at) AS last, array_agg(DISTINCT r.end_cause::text) AS causes
       FROM reservations r
      WHERE r.agent_id = $1 AND r.status = 'settled' AND (r.charge_micros > 0 OR r.earning_micros > 0)
        AND NOT EXISTS (SELECT 1 FROM agent_receipts a WHERE a.request_id = r.request_id)`,
    [stack.agent.agentId],
  );
  const tail = await pool.query(
    "SELECT max(seq) AS seq, max(received_at) AS last_received, count(*) FILTER (WHERE disputed IS NOT NULL)::int AS disputed FROM agent_receipts WHERE agent_id = $1",
    [stack.agent.agentId],
  );
  const agent = await agentVerify().catch((error: unknown) => `agent verify failed: ${(error as Error).message}`);
  return JSON.stringify({ unreceipted: span.rows[0], hub: tail.rows[0], now: new Date().toISOString(), agent });
}

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

  it(`${CYCLES} random faults under traffic (kill -9 of the agent or the gateway, a cut network): chains identical, no settlement without its receipt, none twice, the journal balanced`, async () => {
    const openai = client();
    // The agent reaches the hub through a proxy the test can cut (a dropped route: every connection reset).
    const proxy = await startTcpProxy({ host: "127.0.0.1", port: Number(new URL(stack.gateway.agentOrigin).port) });
    try {
      const identityFile = join(stack.agent.dataDir, "agent.json");
      const identity = JSON.parse(await readFile(identityFile, "utf8")) as Record<string, unknown>;
      await writeFile(identityFile, JSON.stringify({ ...identity, hubUrl: `https://127.0.0.1:${proxy.port}` }));
      await restartAgent("SIGTERM");
      const faults = { agent: 0, gateway: 0, network: 0 };
      const failures = new Map<string, number>();
      let answered = 0;
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        let done = 0;
        const calls = Array.from({ length: REQUESTS_PER_CYCLE }, (_, i) =>
          openai.chat.completions
            .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `cycle ${cycle} call ${i}` }] })
            .then(
              () => 1,
              (error: unknown) => {
                const status = (error as { status?: number }).status ?? "none";
                failures.set(String(status), (failures.get(String(status)) ?? 0) + 1);
                return 0;
              },
            )
            .finally(() => done++),
        );
        // The fault strikes at a random point of the burst (after a random number of its calls were answered,
        // however loaded the machine is), while the rest are in flight or being settled and receipted.
        const strikeAfter = Math.floor(Math.random() * REQUESTS_PER_CYCLE);
        await waitFor(() => done >= strikeAfter, 30_000).catch(() => undefined);
        await new Promise((r) => setTimeout(r, Math.random() * 30));
        const fault = FAULTS[Math.floor(Math.random() * FAULTS.length)]!;
        faults[fault]++;
        if (fault === "agent") await restartAgent("SIGKILL");
        else if (fault === "gateway") await restartGateway();
        else {
          proxy.cut();
          await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
          proxy.restore();
        }
        answered += (await Promise.all(calls)).reduce((a: number, b: number) => a + b, 0);
        await stack.waitForModel("gpt-4o-mini", 60_000);
      }
      // Traffic after the last fault settles and is receipted as usual. The faults may have opened the agent's
      // circuit breaker (its only agent: 503 until the half-open probe succeeds): wait that out.
      for (let i = 0; i < 4; i++) {
        const deadline = Date.now() + 60_000;
        for (;;) {
          try {
            await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `after ${i}` }] });
            break;
          } catch (error) {
            if ((error as { status?: number }).status !== 503 || Date.now() > deadline) throw error;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      }
      // Nothing stays held (a killed gateway's holds go back once the next one declares it dead), and every
      // settlement that moved money for this agent gets its receipt: statements lost with a connection or a
      // process are offered again, receipts the hub never acknowledged are claimed again.
      await waitFor(async () => (await held()) === 0 && (await unreceipted()).length === 0, 90_000).catch(() => undefined);
      if ((await unreceipted()).length > 0) console.log(`edge ledger faults: not receipted — ${await diagnosis()}`);
      expect(await held()).toBe(0);
      expect(await unreceipted()).toEqual([]);
      // Faults are no reason to dispute: every receipt, crash-witnessed ones included, is confirmed.
      const disputed = await pool.query("SELECT seq, disputed, dispute_detail FROM agent_receipts WHERE agent_id = $1 AND disputed IS NOT NULL", [
        stack.agent.agentId,
      ]);
      expect(disputed.rows).toEqual([]);
      const receipts = await expectChainsIdentical();
      const settled = await moneySettlements();
      expect(receipts).toBe(settled);
      const dispatched = decodeLogRecords(await agentExport()).records.filter((r) => decodeReceipt(r.body).witness === "dispatched").length;
      const flags = await pool.query<{ kind: string }>("SELECT kind FROM risk_flags WHERE subject = $1", [`agent:${stack.agent.agentId}`]);
      expect(flags.rows).toEqual([]);
      // The audit (what `npm run admin -- audit` runs): the journal balances and every charge is whole. What it may
      // name is the one known loss of kill -9 of a gateway (docs/ARCHITECTURE.md, "Known limits"): requests that
      // gateway had claimed credit for and not yet settled have no settlement (nothing was charged or earned for
      // them) — only on leases of killed gateways, and never more than the calls in flight at those kills.
      const audit = await new Ledger(pool).audit();
      const unwritten = /^lease lse_\w+: \d+ requests were claimed against it, \d+ settled — \d+ settlements were never written$/;
      expect(audit.problems.filter((p) => !unwritten.test(p))).toEqual([]);
      const lost = (
        await pool.query<{ gateway_id: string; missing: number }>(
          `SELECT l.gateway_id, l.requests_claimed - (SELECT COUNT(*) FROM reservations r WHERE r.lease_id = l.id)::int AS missing
             FROM credit_leases l WHERE l.released AND l.requests_claimed > (SELECT COUNT(*) FROM reservations r WHERE r.lease_id = l.id)`,
        )
      ).rows;
      const live = (await pool.query<{ id: string }>("SELECT id FROM gateways ORDER BY last_seen_at DESC LIMIT 1")).rows[0]!.id;
      expect(lost.filter((l) => l.gateway_id === live)).toEqual([]);
      const unsettled = lost.reduce((n, l) => n + l.missing, 0);
      expect(unsettled).toBeLessThanOrEqual(faults.gateway * REQUESTS_PER_CYCLE);
      console.log(
        `edge ledger faults: ${CYCLES} cycles (agent kill -9 ${faults.agent}, gateway kill -9 ${faults.gateway}, network cut ${faults.network}), ` +
          `${answered} calls answered during them, ${settled} settlements that moved money, ${receipts} receipts on both sides ` +
          `(${dispatched} signed on the hub's dispatch inside a crash gap), 0 lost, 0 twice; failed calls by status ${JSON.stringify(Object.fromEntries(failures))}; ` +
          `${unsettled} calls in flight at gateway kills never settled (audit: ${audit.problems.length} lease lines, nothing else)`,
      );
    } finally {
      await proxy.close();
    }
  }, 3_600_000);
});
