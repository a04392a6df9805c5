/**
 * `npm run bench:ledger`: settlements per second the ledger sustains — requests claimed from a gateway's
 * credit lease in memory, then settled one statement each (`wellspring_settle_batch` with one settlement, as the batcher's
 * one-by-one path) against the local PostgreSQL — spread over 100 wallets and all on one wallet, at several
 * concurrencies.
 */
import pg from "pg";
import { newId, seedPriceTableIfEmpty } from "@wellspring/db";
import { createTestDatabase } from "../e2e/stack/harness.ts";
import { Ledger } from "../gateway/src/billing/ledger.ts";
import { CreditLeases, DEFAULT_LEASE_OPTIONS } from "../gateway/src/billing/leases.ts";
import { LedgerHealth } from "../gateway/src/billing/health.ts";
import { createLogger } from "../gateway/src/log.ts";
import { testSettlement, usageCosting } from "../gateway/src/billing/testing/settlements.ts";

const SETTLEMENTS = Number(process.env.BENCH_PAIRS ?? 3000);
const database = await createTestDatabase();
await seedPriceTableIfEmpty(database.db);
const pool = new pg.Pool({ connectionString: database.url, max: 16 });
pool.on("error", () => {}); // idle clients are terminated when the benchmark database is dropped
const ledger = new Ledger(pool);
const log = createLogger({ proc: "bench" }, "error");
const leases = new CreditLeases(ledger, newId("gw"), "hub_bench", new LedgerHealth(log), log, { ...DEFAULT_LEASE_OPTIONS, sliceMicros: 10n ** 9n });
const results: Record<string, unknown>[] = [];
try {
  for (const wallets of [100, 1]) {
    const users = Array.from({ length: wallets }, () => newId("usr"));
    await Promise.all(users.map((u) => ledger.credit(u, 10n ** 12n, "grant", `grant:${u}`)));
    for (const concurrency of [1, 16, 100]) {
      const latencies: number[] = [];
      let next = 0;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < SETTLEMENTS) {
            const i = next++;
            const id = `req_${wallets}_${concurrency}_${i}`;
            const t0 = performance.now();
            const claim = (await leases.claim(users[i % wallets]!, 5_000n))!;
            const s = testSettlement(claim, usageCosting(1_234n), { ownerId: "usr_owner" });
            await ledger.settle(id, s);
            leases.finish(claim, s.chargeMicros, Promise.resolve());
            latencies.push(performance.now() - t0);
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      latencies.sort((a, b) => a - b);
      results.push({
        wallets,
        concurrency,
        settlementsPerSecond: Math.round(SETTLEMENTS / seconds),
        p50Ms: +latencies[Math.floor(latencies.length / 2)]!.toFixed(2),
        p99Ms: +latencies[Math.floor(latencies.length * 0.99)]!.toFixed(2),
      });
    }
  }
  await leases.close();
  const audit = await ledger.audit();
  console.table(results);
  console.log(`audit ok: ${audit.ok}${audit.ok ? "" : `\n${audit.problems.join("\n")}`}`);
} finally {
  await pool.end();
  await database.drop();
}
process.exit(0);
