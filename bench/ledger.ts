/**
 * `npm run bench:ledger`: settlements per second the ledger sustains (reserve + settle pairs against the
 * local PostgreSQL), spread over 100 wallets and all on one wallet, at several concurrencies.
 */
import pg from "pg";
import { newId } from "@wellspring/db";
import { createTestDatabase } from "../e2e/stack/harness.ts";
import { Ledger } from "../gateway/src/billing/ledger.ts";

const PAIRS = Number(process.env.BENCH_PAIRS ?? 3000);
const database = await createTestDatabase();
const pool = new pg.Pool({ connectionString: database.url, max: 16 });
pool.on("error", () => {}); // idle clients are terminated when the benchmark database is dropped
const ledger = new Ledger(pool);
const results: Record<string, unknown>[] = [];
try {
  for (const wallets of [100, 1]) {
    const users = Array.from({ length: wallets }, () => newId("usr"));
    await Promise.all(users.map((u) => ledger.credit(u, 10n ** 12n, "grant", `grant:${u}`)));
    for (const concurrency of [1, 16, 100]) {
      const latencies: number[] = [];
      let next = 0;
      const started = performance.now();
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < PAIRS) {
          const i = next++;
          const id = `req_${wallets}_${concurrency}_${i}`;
          const t0 = performance.now();
          await ledger.reserve(id, users[i % wallets]!, 5_000n);
          await ledger.settle(id, { chargeMicros: 1_234n, ownerId: "usr_owner", ownerEarningMicros: 1_110n });
          latencies.push(performance.now() - t0);
        }
      }));
      const seconds = (performance.now() - started) / 1000;
      latencies.sort((a, b) => a - b);
      results.push({ wallets, concurrency, settlementsPerSecond: Math.round(PAIRS / seconds), p50Ms: +latencies[Math.floor(latencies.length / 2)]!.toFixed(2), p99Ms: +latencies[Math.floor(latencies.length * 0.99)]!.toFixed(2) });
    }
  }
  const audit = await ledger.audit();
  console.table(results);
  console.log(`audit ok: ${audit.ok}`);
} finally {
  await pool.end();
  await database.drop();
}
process.exit(0);
