/**
 * Rebuilding the hub's books from its agents' ledgers (`npm run admin -- rebuild-from-edge`), through the whole
 * stack: a real gateway, two real Deno agents of two owners under their launcher, the mock provider, and traffic
 * from two users with three keys — plain calls, streams, a stream the client cut (charged for what it received) and
 * a call the provider failed (charged nothing). Both agents' ledgers are exported with the owner's command
 * (`./wellspring-agent ledger export`); the hub's settlement rows, request records, settlement journal entries and
 * daily rollups are dropped and the wallets zeroed; the rebuild from the exports gives them back, compared row by
 * row with the originals. What cannot come back, and why (docs/ARCHITECTURE.md, "Rebuild from the edge"):
 *   - `journal_entries.id`: a sequence number the database hands out on insert (the rows are compared on every
 *     other column: transaction, account, amount, kind, request, time);
 *   - `wallets.updated_at`: the time of the last write;
 *   - requests that moved no money (the failed call) have no statement and so no receipt: their settlement row,
 *     request record and their count in `usage_daily.requests` are not rebuilt.
 * A tampered export is reported (its agent, the first bad sequence) and the receipts from there on are not rebuilt.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { decodeLogRecords, decodeReceipt } from "@wellspring/protocol";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { AGENT_LAUNCHER, enrollAgent, fund, ROOT, startAgentProc, startStack, TSX, waitFor, type AgentProc, type Stack } from "./harness.ts";

const run = promisify(execFile);
const GATEWAY_ENV = { BILLING_ENABLED: "1", LEDGER_TAIL_INTERVAL_MS: "1000" };
const MODEL = "gpt-4o-mini";

let stack: Stack;
let pool: pg.Pool;
let second: AgentProc;
let exportsDir: string;
const keys: string[] = [];

beforeAll(async () => {
  stack = await startStack({ gatewayEnv: GATEWAY_ENV });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
  const owner2 = newId("usr");
  await stack.db.user.create({ data: { id: owner2, email: `${owner2}@owner.test`, isOwner: true } });
  const enrolled = await enrollAgent(stack.db, stack.gateway, owner2);
  second = await startAgentProc(enrolled.dataDir, enrolled.agentId, stack.mock.origin);
  const user2 = newId("usr");
  await stack.db.user.create({ data: { id: user2, email: `${user2}@user.test` } });
  await fund(stack.database.url, user2, 500_000_000n);
  keys.push(stack.apiKey, (await issueKey(stack.db, stack.userId, "second")).secret, (await issueKey(stack.db, user2, "third")).secret);
  exportsDir = await mkdtemp(join(tmpdir(), "ws-edge-exports-"));
}, 180_000);
afterAll(async () => {
  await pool?.end();
  await second?.stop();
  await rm(second?.dataDir ?? "/nonexistent", { recursive: true, force: true });
  await rm(exportsDir ?? "/nonexistent", { recursive: true, force: true });
  await stack?.close();
});

const agents = () => [stack.agent, second];

/** One round of traffic on one key: a plain call, a stream with usage, a stream the client leaves after two chunks. */
async function traffic(apiKey: string, round: number): Promise<void> {
  const openai = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey, maxRetries: 0 });
  await openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: `plain ${round}` }] });
  const stream = await openai.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: `stream ${round}` }],
    stream: true,
    stream_options: { include_usage: true },
  });
  for await (const chunk of stream) void chunk;
  const cut = await openai.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: `cut ${round} [mock chunks=40 delay_ms=25]` }],
    stream: true,
  });
  let seen = 0;
  for await (const chunk of cut) {
    void chunk;
    if (++seen === 2) cut.controller.abort();
  }
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  return (await pool.query<{ n: number }>(sql, params)).rows[0]!.n;
}

/** Settlements of `agentId` that moved money and have no receipt yet. */
const unreceipted = (agentId: string) =>
  count(
    `SELECT count(*)::int AS n FROM reservations r WHERE r.agent_id = $1 AND r.status = 'settled' AND (r.charge_micros > 0 OR r.earning_micros > 0)
       AND NOT EXISTS (SELECT 1 FROM agent_receipts a WHERE a.request_id = r.request_id AND a.countersignature IS NOT NULL)`,
    [agentId],
  );

async function agentVerify(agent: AgentProc): Promise<string> {
  return (await run(AGENT_LAUNCHER, ["ledger", "verify", "--data", agent.dataDir], { cwd: ROOT })).stdout;
}

/** The owner's export, as docs/operations/agent.md prints it: `./wellspring-agent ledger export --data DIR > FILE`. */
async function exportLedger(agent: AgentProc, file: string): Promise<void> {
  const out = await run(AGENT_LAUNCHER, ["ledger", "export", "--data", agent.dataDir], { cwd: ROOT, encoding: "buffer", maxBuffer: 64 << 20 });
  await writeFile(file, out.stdout);
}

async function rebuild(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, DATABASE_URL: stack.database.url, DATA_DIR: stack.gateway.dataDir };
  return run(TSX, ["gateway/src/cli/admin.ts", "rebuild-from-edge", ...args], { cwd: ROOT, env }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

type Row = Record<string, unknown>;
const rows = async (sql: string): Promise<Row[]> => (await pool.query<Row>(sql)).rows;

/**
 * The rows a rebuild gives back, each as text, in a fixed order: every column but the two that cannot be rebuilt
 * (`journal_entries.id`, `wallets.updated_at`).
 */
async function books() {
  return {
    reservations: await rows(
      "SELECT to_jsonb(r)::text AS row, r.request_id, r.charge_micros::text, r.earning_micros::text FROM reservations r ORDER BY request_id",
    ),
    records: await rows("SELECT to_jsonb(r)::text AS row, r.id FROM request_records r ORDER BY id"),
    journal: await rows(
      `SELECT (to_jsonb(j) - 'id')::text AS row FROM journal_entries j WHERE kind IN ('usage', 'earning', 'margin') ORDER BY tx_id, account, kind`,
    ),
    rollups: await rows("SELECT user_id, day::text, model, spent_micros::text, requests FROM usage_daily ORDER BY user_id, day, model"),
    wallets: await rows("SELECT user_id, available_micros::text, reserved_micros::text, spent_micros::text FROM wallets ORDER BY user_id"),
  };
}

/** Drops what the rebuild gives back: settlements, request records, settlement journal entries, rollups; zeroes wallets. */
async function dropUsage(): Promise<void> {
  await pool.query("DELETE FROM journal_entries WHERE kind IN ('usage', 'earning', 'margin')");
  await pool.query("DELETE FROM request_records");
  await pool.query("DELETE FROM usage_daily");
  await pool.query("DELETE FROM reservations");
  await pool.query("UPDATE wallets SET available_micros = 0, spent_micros = 0");
}

let original: Awaited<ReturnType<typeof books>>;
/** Requests that moved no money (no statement, no receipt). */
let moneyless: Set<string>;

describe("rebuild from the edge", () => {
  it("dropping the hub's usage, journal and rollup rows and rebuilding from both agents' exports gives the same rows", async () => {
    await stack.waitForModel(MODEL);
    // Traffic until both agents served money-moving requests (routing shares the load between them).
    for (let round = 0; round < 12; round++) {
      await Promise.all(keys.map((k, i) => traffic(k, round * keys.length + i)));
      const served = await Promise.all(
        agents().map((a) => count("SELECT count(*)::int AS n FROM reservations WHERE agent_id = $1 AND charge_micros > 0", [a.agentId])),
      );
      if (round >= 1 && served.every((n) => n >= 3)) break;
    }
    // A call the provider fails: nothing charged, nothing earned, no receipt.
    const failing = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: keys[2]!, maxRetries: 0 });
    await expect(failing.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "fail [mock status=500]" }] })).rejects.toMatchObject({
      status: 500,
    });
    // Every settlement that moved money is confirmed at the hub and acknowledged at its agent; nothing is held.
    await waitFor(async () => (await Promise.all(agents().map((a) => unreceipted(a.agentId)))).every((n) => n === 0), 60_000);
    for (const a of agents()) await waitFor(async () => /(\d+) of \1 receipts acknowledged/.test(await agentVerify(a)), 30_000);
    await stack.gateway.stop();
    expect(await count("SELECT count(*)::int AS n FROM reservations WHERE status = 'held'")).toBe(0);
    expect(await count("SELECT count(*)::int AS n FROM credit_leases WHERE NOT released")).toBe(0);
    for (const [i, a] of agents().entries()) await exportLedger(a, join(exportsDir, `agent-${i}.ledger`));

    original = await books();
    moneyless = new Set(original.reservations.filter((r) => r.charge_micros === "0" && r.earning_micros === "0").map((r) => r.request_id as string));
    expect(moneyless.size).toBeGreaterThanOrEqual(1);
    // Every receipt in the exports carries the hub's sealed record (receipt version 3).
    for (const a of agents()) {
      const file = await readFile(join(exportsDir, `agent-${agents().indexOf(a)}.ledger`));
      const receipts = decodeLogRecords(new Uint8Array(file)).records.map((r) => decodeReceipt(r.body));
      expect(receipts.length).toBeGreaterThanOrEqual(3);
      expect(receipts.every((r) => r.hubRecord !== undefined && r.agentId === a.agentId)).toBe(true);
    }

    const moneylessIn = new Map(
      (
        await rows(
          `SELECT user_id || ' ' || (settled_at AT TIME ZONE 'UTC')::date::text || ' ' || COALESCE(model, 'unknown') AS grp, count(*)::int AS n
             FROM reservations WHERE charge_micros = 0 AND earning_micros = 0 GROUP BY 1`,
        )
      ).map((r) => [r.grp as string, r.n as number]),
    );

    await dropUsage();
    const started = Date.now();
    const out = await rebuild(["--from", exportsDir]);
    const ms = Date.now() - started;
    expect(out.stderr).toMatch(/rebuild-from-edge: \d+ receipts read, \d+ requests rebuilt/);
    expect(out.code).toBe(0);
    const rebuiltCount = original.reservations.length - moneyless.size;
    expect(out.stdout).toContain(`${rebuiltCount} requests rebuilt from 2 ledgers`);
    for (const a of agents())
      expect(out.stdout).toMatch(new RegExp(`agent ${a.agentId} \\(.*\\): (\\d+) receipts, \\1 verified, \\1 requests rebuilt, chain whole`));

    const rebuilt = await books();
    const keep = <T extends Row>(list: T[], id: (r: T) => unknown) => list.filter((r) => !moneyless.has(id(r) as string));
    expect(rebuilt.reservations).toEqual(keep(original.reservations, (r) => r.request_id));
    expect(rebuilt.records).toEqual(keep(original.records, (r) => r.id));
    expect(rebuilt.journal).toEqual(original.journal);
    expect(rebuilt.wallets).toEqual(original.wallets);
    // Rollups: the same rows, but for the count of requests that moved no money (a row of only those is absent).
    const expectedRollups = original.rollups
      .map((u): Row => ({ ...u, requests: (u.requests as number) - (moneylessIn.get(`${String(u.user_id)} ${String(u.day)} ${String(u.model)}`) ?? 0) }))
      .filter((u) => (u.requests as number) > 0 || u.spent_micros !== "0");
    expect(rebuilt.rollups).toEqual(expectedRollups);
    expect(original.rollups.reduce((n, u) => n + (u.requests as number), 0) - rebuilt.rollups.reduce((n, u) => n + (u.requests as number), 0)).toBe(
      moneyless.size,
    );
    // The audit's invariants hold on the rebuilt books (journal balanced, wallets = journal, spent = rollups). What
    // it names is the requests that moved no money: their leases counted them, and their settlement rows are not
    // rebuilt (no receipt).
    const audit = await run(TSX, ["gateway/src/cli/admin.ts", "audit"], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: stack.database.url, DATA_DIR: stack.gateway.dataDir },
    }).then(
      (r) => r.stdout,
      (e: { stdout: string; stderr: string }) => e.stderr,
    );
    const problems = audit.trim().split("\n").slice(1);
    const unwritten = /^lease lse_\w+: \d+ requests were claimed against it, \d+ settled — (\d+) settlements were never written$/;
    expect(problems.filter((p) => !unwritten.test(p))).toEqual([]);
    expect(problems.reduce((n, p) => n + Number(unwritten.exec(p)![1]), 0)).toBe(moneyless.size);
    // A second run refuses the database it just filled.
    const again = await rebuild(["--from", exportsDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/Cannot rebuild: the database already holds \d+ settlement/);
    console.log(
      `rebuild from edge: ${original.reservations.length} settlements (${moneyless.size} moved no money), ${rebuilt.reservations.length} rebuilt ` +
        `with ${rebuilt.records.length} request records, ${rebuilt.journal.length} journal entries, ${rebuilt.rollups.length} rollup rows, ` +
        `${rebuilt.wallets.length} wallets, equal to the originals; the CLI took ${ms} ms`,
    );
  }, 300_000);

  it("a tampered export is reported with its first bad sequence, and its receipts from there on are not rebuilt", async () => {
    expect(original).toBeDefined();
    const file = join(exportsDir, "agent-0.ledger");
    const bytes = new Uint8Array(await readFile(file));
    const records = decodeLogRecords(bytes).records;
    const bad = Math.min(2, records.length); // sequence 2 (or 1)
    // One byte of the receipt's body changed (in its previous-hash link), the agent's signature left as it was.
    let offset = 0;
    for (let i = 0; i < bad - 1; i++) offset += 4 + records[i]!.body.length + 64;
    const tampered = bytes.slice();
    const at = offset + 4 + 20;
    tampered[at] = tampered[at]! ^ 0x01;
    await writeFile(file, tampered);
    const receipts = records.map((r) => decodeReceipt(r.body));
    const lost = new Set(receipts.slice(bad - 1).map((r) => r.requestId));

    await dropUsage();
    const out = await rebuild(["--from", exportsDir]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(
      new RegExp(
        `agent ${stack.agent.agentId} \\(.*agent-0\\.ledger\\): ${records.length} receipts, ${bad - 1} verified, ${bad - 1} requests rebuilt; BAD at sequence ${bad} \\((bad_signature|malformed)`,
      ),
    );
    expect(out.stderr).toMatch(new RegExp(`agent ${second.agentId} \\(.*\\): (\\d+) receipts, \\1 verified, \\1 requests rebuilt, chain whole`));
    const rebuilt = await books();
    const ids = new Set(rebuilt.reservations.map((r) => r.request_id as string));
    for (const id of lost) expect(ids.has(id)).toBe(false);
    expect(rebuilt.reservations).toEqual(original.reservations.filter((r) => !moneyless.has(r.request_id as string) && !lost.has(r.request_id as string)));
  }, 120_000);
});
