/**
 * Receipts per second the agent's edge ledger sustains with durable commits (src/ledger.ts: SQLite WAL with
 * `synchronous=FULL` plus the append-only log fsync'd per batch, in the ledger's worker; each receipt hashed and
 * signed with Ed25519 on the main thread), three ways: every receipt at once (the batches fill up, at most
 * LEDGER_BATCH_RECEIPTS_MAX per commit), 32 in flight at a time (statements arriving as bench:hop's concurrency 32
 * settles them), and one at a time (a commit and an fsync each). Each round opens a fresh ledger in a temporary
 * folder on the system's temp disk; rounds alternate the ways, so drift on a shared machine shows. Prints one JSON
 * line per round, then the medians. Run under the heavy lock:
 *   ../node_modules/.bin/deno run -A bench/ledger_bench.ts [receipts per way, default 4000] [rounds, default 3]
 */
import process from "node:process";
import { generateAgentKeyPair } from "../../protocol/src/mod.ts";
import { AgentLedger } from "../src/ledger.ts";
import { testReceiptInput } from "../src/testdata/receipt_input.ts";

const N = Number(Deno.args[0] ?? 4000);
const ROUNDS = Number(Deno.args[1] ?? 3);
/** Receipts one at a time are slow (one fsync each): this many of them per round. */
const SERIAL = Math.min(N, 300);
const IN_FLIGHT = 32;

type Way = "all at once" | "32 in flight" | "one at a time";

async function measure(way: Way, round: number): Promise<{ way: Way; receipts: number; perSecond: number; cpuMsPer1000: number }> {
  const dir = await Deno.makeTempDir({ prefix: "ws-ledger-bench-" });
  const { pair } = await generateAgentKeyPair();
  const ledger = await AgentLedger.open(dir, "agt_ledger_bench", pair.privateKey);
  const n = way === "one at a time" ? SERIAL : N;
  const id = (i: number) => `req_${round}_${i}`;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (way === "all at once") {
    await Promise.all(Array.from({ length: n }, (_, i) => ledger.append(testReceiptInput(id(i)))));
  } else if (way === "32 in flight") {
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < n) await ledger.append(testReceiptInput(id(next++)));
      }),
    );
  } else {
    for (let i = 0; i < n; i++) await ledger.append(testReceiptInput(id(i)));
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  if (ledger.tail.seq !== n) throw new Error(`${way}: the chain holds ${ledger.tail.seq} receipts, not ${n}`);
  await ledger.close();
  await Deno.remove(dir, { recursive: true });
  // The worker's CPU is this process's too (process.cpuUsage counts every thread).
  return { way, receipts: n, perSecond: Math.round(n / seconds), cpuMsPer1000: +(((cpu.user + cpu.system) / 1000 / n) * 1000).toFixed(1) };
}

const ways: Way[] = ["all at once", "32 in flight", "one at a time"];
const results: Awaited<ReturnType<typeof measure>>[] = [];
for (let round = 1; round <= ROUNDS; round++) {
  for (const way of ways) {
    const r = await measure(way, round);
    results.push(r);
    console.log(JSON.stringify({ round, ...r }));
  }
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
console.log(
  JSON.stringify({
    at: new Date().toISOString(),
    medians: Object.fromEntries(
      ways.map((w) => {
        const of = results.filter((r) => r.way === w);
        return [w, { perSecond: median(of.map((r) => r.perSecond)), cpuMsPer1000: median(of.map((r) => r.cpuMsPer1000)) }];
      }),
    ),
  }),
);
