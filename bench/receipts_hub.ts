/**
 * `npm run bench:receipts-hub`: the hub's share of the edge ledger alone — `EdgeReceipts.accept` (signature checks,
 * the batch's transaction against its settlement rows, countersignatures) for receipts signed in advance, against the
 * local PostgreSQL, in batches as they arrive at concurrency 32 (BENCH_RECEIPT_BATCH, default 8). Prints the CPU per
 * 1,000 receipts of this process (the hub's work, every thread), its event loop's busy time, and the CPU of this
 * database's PostgreSQL backends. With
 * BENCH_RECEIPTS_COMPARE=<module>[,<module>…] (copies of other versions of gateway/src/ledger/receipts.ts beside it,
 * paths relative to this file) each round runs those versions and this one in turn in one process, so drift on a
 * shared machine shows in all of them.
 */
import { mkdtemp } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { performance } from "node:perf_hooks";
import { join } from "node:path";
import { newId } from "@wellspring/db";
import { generateAgentKeyPair, RECEIPT_GENESIS_HASH, signReceipt, toBase64Url, type SignedReceipt } from "@wellspring/protocol";
import { createTestDatabase } from "../e2e/stack/harness.ts";
import { cpuSeconds } from "../e2e/stack/procfs.ts";
import { createLogger } from "../gateway/src/log.ts";
import { loadHubReceiptKey } from "../gateway/src/ledger/hub_key.ts";
import { EdgeReceipts } from "../gateway/src/ledger/receipts.ts";

const RECEIPTS = Number(process.env.BENCH_RECEIPTS ?? 2000);
const BATCH = Number(process.env.BENCH_RECEIPT_BATCH ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const COMPARE = process.env.BENCH_RECEIPTS_COMPARE;
const USAGE = { inputTokens: 12, outputTokens: 40, cachedInputTokens: 0, audioSeconds: 0, images: 0, characters: 0 };

type Accepting = Pick<EdgeReceipts, "accept">;
type Make = (...args: ConstructorParameters<typeof EdgeReceipts>) => Accepting;
const ways: [string, Make][] = [["this", (...a) => new EdgeReceipts(...a)]];
for (const path of (COMPARE ?? "").split(",").filter(Boolean).reverse()) {
  const other = (await import(path)) as { EdgeReceipts: typeof EdgeReceipts };
  ways.unshift([path.replace(/^.*\//, ""), (...a) => new other.EdgeReceipts(...a)]);
}

const database = await createTestDatabase();
const log = createLogger({ proc: "bench" }, "error");
const hubKey = await loadHubReceiptKey(join(await mkdtemp(join(tmpdir(), "ws-hubkey-")), "receipt-key.pk8"));
const db = database.db;

/** An agent with RECEIPTS settled requests and their receipts, signed in advance (not measured). */
async function prepared(): Promise<{ agent: { id: string; publicKey: string }; receipts: SignedReceipt[] }> {
  const owner = await db.user.create({ data: { id: newId("usr"), email: `${newId("usr")}@example.com`, isOwner: true } });
  const { pair } = await generateAgentKeyPair();
  const agent = await db.agent.create({ data: { id: newId("agt"), ownerId: owner.id, name: "a", publicKey: pair.publicKey } });
  const ids = Array.from({ length: RECEIPTS }, () => newId("req"));
  await db.reservation.createMany({
    data: ids.map((requestId) => ({
      requestId,
      userId: owner.id,
      amountMicros: 1000n,
      status: "settled",
      chargeMicros: 150n,
      earningMicros: 105n,
      priceVer: 1,
      model: "gpt-4o-mini",
      agentId: agent.id,
      ownerId: owner.id,
      tierBps: 7000,
      inputTokens: 12,
      outputTokens: 40,
      cachedInputTokens: 0,
      settledAt: new Date(),
    })),
  });
  const receipts: SignedReceipt[] = [];
  let tail = { seq: 0, hash: RECEIPT_GENESIS_HASH };
  for (const requestId of ids) {
    const s = await signReceipt(pair.privateKey, {
      ...{ seq: tail.seq + 1, prevHash: tail.hash, agentId: agent.id, requestId, model: "gpt-4o-mini" },
      ...{ reportedUsage: USAGE, chargedUsage: USAGE, estimated: false, priceVer: 1, tierBps: 7000 },
      ...{ chargeMicros: 150n, earningMicros: 105n, agentEarningMicros: 105n, startedAtMs: Date.now() - 100, endedAtMs: Date.now() },
      endCause: "completed",
    });
    receipts.push(s);
    tail = { seq: s.receipt.seq, hash: s.hash };
  }
  return { agent: { id: agent.id, publicKey: pair.publicKey }, receipts };
}

async function backendCpu(): Promise<number> {
  const rows = await db.$queryRaw<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`;
  return cpuSeconds(rows.map((r) => r.pid));
}

const results: { way: string; round: number; hubCpuPer1000: number; hubLoopBusyMsPer1000: number; postgresCpuPer1000: number; receiptsPerSecond: number }[] =
  [];
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [way, make] of ways) {
      const { agent, receipts } = await prepared();
      const edge = make(db, hubKey, log);
      const wire = receipts.map((r) => ({ body: toBase64Url(r.body), signature: toBase64Url(r.signature) }));
      const elu0 = performance.eventLoopUtilization();
      const cpu0 = process.cpuUsage();
      const pg0 = await backendCpu();
      const t0 = performance.now();
      let stored = 0;
      for (let i = 0; i < wire.length; i += BATCH) {
        const acks = await edge.accept(agent, { receipts: wire.slice(i, i + BATCH) });
        stored += acks.filter((a) => a.countersignature !== null).length;
      }
      const seconds = (performance.now() - t0) / 1000;
      const pg1 = await backendCpu();
      const cpu = process.cpuUsage(cpu0);
      const loop = performance.eventLoopUtilization(elu0);
      if (stored !== RECEIPTS) throw new Error(`${way}: ${stored} of ${RECEIPTS} receipts countersigned`);
      const r = {
        way,
        round,
        hubCpuPer1000: +((cpu.user + cpu.system) / 1e6 / RECEIPTS) * 1000,
        // The event loop's busy time (the thread that also carries every request), ms.
        hubLoopBusyMsPer1000: +((loop.active / RECEIPTS) * 1000).toFixed(1),
        postgresCpuPer1000: +(((pg1 - pg0) / RECEIPTS) * 1000).toFixed(3),
        receiptsPerSecond: Math.round(RECEIPTS / seconds),
      };
      r.hubCpuPer1000 = +r.hubCpuPer1000.toFixed(3);
      results.push(r);
      console.log(JSON.stringify({ ...r, batch: BATCH, load: loadavg().map((x) => +x.toFixed(2)) }));
    }
  }
} finally {
  await database.drop();
}
