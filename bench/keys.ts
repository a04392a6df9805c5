/**
 * `npm run bench:keys`: what checking a virtual key costs. A well-formed key that was never issued, answered
 * by the in-memory key filter, against the database lookup every such key cost before; the filter's memory
 * and build time at 1 M keys; and the rebuild query at BENCH_KEYS keys (default 100,000) in PostgreSQL.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { newId } from "@wellspring/db";
import { createTestDatabase } from "../e2e/stack/harness.ts";
import { KeyVerifier } from "../gateway/src/api/keys.ts";
import { activeKeyPrefixes, hashPrefix64, KeyFilter } from "../gateway/src/api/key_filter.ts";

const FILTER_KEYS = 1_000_000;
const DB_KEYS = Number(process.env.BENCH_KEYS ?? 100_000);
const CHECKS = 200_000;
const LOOKUPS = 2_000;
const randomKey = () => `sk-ws-${newId("key").slice(4)}${newId("key").slice(4)}`;
const results: Record<string, unknown>[] = [];

// The filter alone, at 1 M keys.
const filter = new KeyFilter();
const prefixes = new BigUint64Array(FILTER_KEYS);
for (let i = 0; i < FILTER_KEYS; i++) prefixes[i] = randomBytes(8).readBigUInt64BE();
let t = performance.now();
filter.beginRebuild().install(prefixes);
results.push({ what: `filter build (sort) at ${FILTER_KEYS} keys`, ms: +(performance.now() - t).toFixed(1), bytes: prefixes.byteLength });
const probes = Array.from({ length: CHECKS }, () => hashPrefix64(randomBytes(32).toString("hex")));
t = performance.now();
let held = 0;
for (const p of probes) if (filter.has(p)) held++;
results.push({ what: "filter.has, random key", usPerCheck: +(((performance.now() - t) * 1000) / CHECKS).toFixed(3), falsePositives: held });

const database = await createTestDatabase();
const pool = new pg.Pool({ connectionString: database.url, max: 4 });
pool.on("error", () => {});
try {
  // Every key check a random key costs now: pattern, SHA-256, filter, miss budget spent → refused.
  const verifier = new KeyVerifier(database.db, { filter, missLookupsPerSecond: 10 });
  const keys = Array.from({ length: CHECKS }, randomKey);
  for (let i = 0; i < 1_000; i++) await verifier.verify(keys[i]!); // warm-up, spends the budget
  t = performance.now();
  for (const k of keys) await verifier.verify(k);
  results.push({
    what: "verify(random key), filter on",
    usPerCheck: +(((performance.now() - t) * 1000) / CHECKS).toFixed(3),
    dbQueries: verifier.counts.queries,
  });

  // What each random key cost before: a database lookup.
  const unfiltered = new KeyVerifier(database.db, { filter: null, missLookupsPerSecond: 10 });
  t = performance.now();
  for (let i = 0; i < LOOKUPS; i++) await unfiltered.verify(keys[i]!);
  results.push({
    what: "verify(random key), no filter (database lookup)",
    usPerCheck: +(((performance.now() - t) * 1000) / LOOKUPS).toFixed(1),
    dbQueries: unfiltered.counts.queries,
  });

  // The rebuild query.
  const userId = newId("usr");
  await database.db.user.create({ data: { id: userId, email: `${userId}@bench.test` } });
  await pool.query(
    `INSERT INTO virtual_keys (id, user_id, name, prefix, hash)
     SELECT 'key_bench_' || g, $1, 'bench', 'sk-ws-', encode(sha256(g::text::bytea), 'hex') FROM generate_series(1, $2::int) g`,
    [userId, DB_KEYS],
  );
  t = performance.now();
  const loaded = await activeKeyPrefixes(pool);
  results.push({ what: `rebuild query + parse at ${DB_KEYS} keys`, ms: +(performance.now() - t).toFixed(1), rows: loaded.length });
  t = performance.now();
  new KeyFilter().beginRebuild().install(loaded);
  results.push({ what: `rebuild sort at ${DB_KEYS} keys`, ms: +(performance.now() - t).toFixed(1) });
} finally {
  await pool.end();
  await database.drop();
}
console.table(results);
process.exit(0);
