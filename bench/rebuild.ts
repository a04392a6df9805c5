/**
 * `npm run bench:rebuild`: receipts per second `rebuild-from-edge` rebuilds into an empty local PostgreSQL — one
 * agent's export of BENCH_RECEIPTS (default 20,000) signed receipts with sealed hub records, for 10 users with a key
 * each — and that the rebuilt journal balances. Progress lines go to stderr as an operator sees them.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { createTestDatabase } from "../e2e/stack/harness.ts";
import { rebuildFromEdge } from "../gateway/src/ledger/rebuild.ts";
import { syntheticExport } from "../gateway/src/ledger/testing/synthetic_export.ts";

const RECEIPTS = Number(process.env.BENCH_RECEIPTS ?? 20_000);
const database = await createTestDatabase();
const pool = new pg.Pool({ connectionString: database.url, max: 4 });
pool.on("error", () => {}); // idle clients are terminated when the benchmark database is dropped
const dir = await mkdtemp(join(tmpdir(), "ws-bench-rebuild-"));
try {
  const made = await syntheticExport(database.db, pool, { receipts: RECEIPTS });
  const file = join(dir, "agent.ledger");
  await writeFile(file, made.bytes);
  const started = performance.now();
  const report = await rebuildFromEdge({ pool, rebuildKey: made.rebuildKey, from: [file], progress: (line) => console.error(line) });
  const seconds = (performance.now() - started) / 1000;
  const journal = await pool.query<{ s: string }>("SELECT COALESCE(SUM(amount_micros), 0)::text AS s FROM journal_entries");
  console.log(report.lines.join("\n"));
  console.log(
    `rebuild-from-edge: ${report.rebuilt} of ${RECEIPTS} receipts (${(made.bytes.length / 2 ** 20).toFixed(1)} MiB export) in ${seconds.toFixed(1)} s = ` +
      `${Math.round(report.rebuilt / seconds)} receipts/s; journal sums to ${journal.rows[0]!.s}`,
  );
  if (!report.ok || journal.rows[0]!.s !== "0") process.exitCode = 1;
} finally {
  await pool.end();
  await rm(dir, { recursive: true, force: true });
  await database.drop();
}
