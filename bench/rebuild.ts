/**
 * `npm run bench:rebuild`: receipts per second `rebuild-from-edge` rebuilds into an empty local PostgreSQL — one
 * agent's export of BENCH_RECEIPTS (default 20,000) signed receipts with sealed hub records, for 10 users with a key
 * each — and that the rebuilt journal balances. Progress lines go to stderr as an operator sees them.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { newId } from "@wellspring/db";
import { concatBytes, encodeLogRecord, generateAgentKeyPair, RECEIPT_GENESIS_HASH, signReceipt, type Receipt } from "@wellspring/protocol";
import { createTestDatabase } from "../e2e/stack/harness.ts";
import { Ledger } from "../gateway/src/billing/ledger.ts";
import { issueKey } from "../gateway/src/ops/keys.ts";
import { recordRowJson } from "../gateway/src/api/records.ts";
import { hubRecordJson, sealHubRecord } from "../gateway/src/ledger/hub_record.ts";
import { rebuildFromEdge } from "../gateway/src/ledger/rebuild.ts";

const RECEIPTS = Number(process.env.BENCH_RECEIPTS ?? 20_000);
const USERS = 10;
const database = await createTestDatabase();
const pool = new pg.Pool({ connectionString: database.url, max: 4 });
pool.on("error", () => {}); // idle clients are terminated when the benchmark database is dropped
const dir = await mkdtemp(join(tmpdir(), "ws-bench-rebuild-"));
try {
  const db = database.db;
  const ownerId = newId("usr");
  await db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  const { pair } = await generateAgentKeyPair();
  const agentId = newId("agt");
  await db.agent.create({ data: { id: agentId, ownerId, name: "bench", publicKey: pair.publicKey } });
  const users: { id: string; keyId: string }[] = [];
  for (let i = 0; i < USERS; i++) {
    const id = newId("usr");
    await db.user.create({ data: { id, email: `${id}@user.test` } });
    users.push({ id, keyId: (await issueKey(db, id, "bench")).id });
    await new Ledger(pool).credit(id, 10n ** 12n, "grant", `grant:${id}`);
  }
  const rebuildKey = new Uint8Array(randomBytes(32));
  const usage = { inputTokens: 1200, outputTokens: 300, cachedInputTokens: 0, audioSeconds: 0, images: 0, characters: 0 };
  const t0 = Date.now() - RECEIPTS * 1000;
  const parts: Uint8Array[] = [];
  let prev = { seq: 0, hash: RECEIPT_GENESIS_HASH };
  for (let i = 0; i < RECEIPTS; i++) {
    const user = users[i % USERS]!;
    const requestId = newId("req");
    const at = new Date(t0 + i * 1000).toISOString();
    const charge = 1_000 + (i % 97);
    const earning = Math.floor((charge * 7) / 10);
    const reservation = JSON.stringify({
      request_id: requestId,
      user_id: user.id,
      amount_micros: 5_000,
      status: "settled",
      charge_micros: charge,
      price_ver: 1,
      plan_id: null,
      api: "openai",
      model: "gpt-4o-mini",
      agent_id: agentId,
      owner_id: ownerId,
      tier: "A",
      tier_bps: 7000,
      earning_micros: earning,
      input_tokens: usage.inputTokens,
      output_tokens: usage.outputTokens,
      cached_input_tokens: 0,
      estimated: false,
      end_cause: "completed",
      created_at: at,
      settled_at: at,
      lease_id: null,
      audio_seconds: null,
      images: null,
      characters: null,
      official_micros: charge,
      plan_bps: 10000,
      lease_micros: null,
      overdraft_micros: 0,
    });
    const record = recordRowJson({
      id: requestId,
      userId: user.id,
      keyId: user.keyId,
      agentId,
      gatewayId: "gw_bench",
      route: "/v1/chat/completions",
      provider: "openai",
      model: "gpt-4o-mini",
      streamed: i % 2 === 0,
      httpStatus: 200,
      endCause: "completed",
      bytesIn: 2_000,
      bytesOut: 1_500,
      startedAt: new Date(at),
      firstByteMs: 40,
      durationMs: 400,
      inputTokens: usage.inputTokens,
      outputTokens: usage.outputTokens,
      cachedInputTokens: 0,
      usageEstimated: false,
      priceVer: 1,
      tier: "A",
      tierBps: 7000,
      userChargeMicros: BigInt(charge),
      ownerEarningMicros: BigInt(earning),
    });
    const receipt: Receipt = {
      seq: prev.seq + 1,
      prevHash: prev.hash,
      agentId,
      requestId,
      model: "gpt-4o-mini",
      reportedUsage: usage,
      chargedUsage: usage,
      estimated: false,
      priceVer: 1,
      tierBps: 7000,
      chargeMicros: BigInt(charge),
      earningMicros: BigInt(earning),
      agentEarningMicros: BigInt(earning),
      startedAtMs: Date.parse(at),
      endedAtMs: Date.parse(at) + 400,
      endCause: "completed",
      hubRecord: sealHubRecord(rebuildKey, requestId, hubRecordJson(reservation, record)),
    };
    const signed = await signReceipt(pair.privateKey, receipt);
    parts.push(encodeLogRecord(signed.body, signed.signature));
    prev = { seq: receipt.seq, hash: signed.hash };
  }
  const file = join(dir, "agent.ledger");
  const bytes = concatBytes(parts);
  await writeFile(file, bytes);
  const started = performance.now();
  const report = await rebuildFromEdge({ pool, rebuildKey, from: [file], progress: (line) => console.error(line) });
  const seconds = (performance.now() - started) / 1000;
  const journal = await pool.query<{ s: string }>("SELECT COALESCE(SUM(amount_micros), 0)::text AS s FROM journal_entries");
  console.log(report.lines.join("\n"));
  console.log(
    `rebuild-from-edge: ${report.rebuilt} of ${RECEIPTS} receipts (${(bytes.length / 2 ** 20).toFixed(1)} MiB export) in ${seconds.toFixed(1)} s = ` +
      `${Math.round(report.rebuilt / seconds)} receipts/s; journal sums to ${journal.rows[0]!.s}`,
  );
  if (!report.ok || journal.rows[0]!.s !== "0") process.exitCode = 1;
} finally {
  await pool.end();
  await rm(dir, { recursive: true, force: true });
  await database.drop();
}
