/**
 * `npm run bench:portal`: the portal's dashboard and usage queries with 1,000,000 usage rows (request records
 * and settled charges) for one user, spread over 90 days, beside 100,000 rows of other users. Each query runs
 * through the portal's own data layer (web/lib/data), 50 times; p50 / p95 / max in ms go to
 * bench/results/portal.json. Target (issue [Portal]): p95 < 300 ms for every page's data.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { newId } from "@wellspring/db";
import { createTestDatabase } from "../e2e/stack/harness.ts";

/** The portal data layer's shape as used here (it is compiled with the portal's settings, not this project's). */
interface Actor {
  userId: string;
  email: string;
  name: string | null;
  isOwner: boolean;
  isAdmin: boolean;
}
interface UsageModule {
  balance(a: Actor): Promise<unknown>;
  spendByDay(a: Actor, days: number): Promise<unknown>;
  spendByModel(a: Actor, days: number): Promise<unknown>;
  usagePage(
    a: Actor,
    f: { keyId?: string; model?: string; from?: string; to?: string },
    before?: { startedAt: Date; id: string },
    limit?: number,
  ): Promise<{ startedAt: Date; id: string }[]>;
}
const USAGE_MODULE = "../web/lib/data/usage.ts";

const ROWS = Number(process.env.BENCH_PORTAL_ROWS ?? 1_000_000);
const OTHER_ROWS = Math.round(ROWS / 10);
const RUNS = 50;

const database = await createTestDatabase();
process.env.DATABASE_URL = database.url;
const pool = new pg.Pool({ connectionString: database.url, max: 2 });

async function seedUser(rows: number): Promise<{ userId: string; keyIds: string[] }> {
  const userId = newId("usr");
  await pool.query("INSERT INTO users (id, email, updated_at) VALUES ($1, $2, now())", [userId, `${userId}@bench.test`]);
  const keyIds = [newId("key"), newId("key"), newId("key")];
  for (const [i, k] of keyIds.entries()) {
    await pool.query("INSERT INTO virtual_keys (id, user_id, name, prefix, hash) VALUES ($1, $2, $3, 'sk-ws-xxxxxx', $4)", [
      k,
      userId,
      `key ${i}`,
      `${k}-hash`,
    ]);
  }
  await pool.query("INSERT INTO wallets (user_id, available_micros) VALUES ($1, 1000000000)", [userId]);
  const started = Date.now();
  // Request records and their settled charges, generated in the database (one statement each).
  await pool.query(
    `INSERT INTO request_records (id, user_id, key_id, gateway_id, route, provider, model, streamed, http_status, end_cause, started_at, duration_ms, input_tokens, output_tokens, user_charge_micros, price_ver)
     SELECT 'req_b' || $1::text || g, $1, ($2::text[])[1 + g % 3], 'gw_bench', '/v1/chat/completions', 'openai',
            (ARRAY['gpt-4o-mini','gpt-4o','claude-haiku-4-5','claude-sonnet-4-5','text-embedding-3-small'])[1 + g % 5],
            g % 2 = 0, 200, 'completed', now() - (g * interval '90 days' / $3::int), 100 + g % 900, 100 + g % 1000, g % 500, 10 + g % 5000, 1
     FROM generate_series(1, $3::int) AS g`,
    [userId, keyIds, rows],
  );
  await pool.query(
    `INSERT INTO reservations (request_id, user_id, amount_micros, status, charge_micros, model, created_at, settled_at, price_ver)
     SELECT 'req_b' || $1::text || g, $1, 100000, 'settled', 10 + g % 5000,
            (ARRAY['gpt-4o-mini','gpt-4o','claude-haiku-4-5','claude-sonnet-4-5','text-embedding-3-small'])[1 + g % 5],
            now() - (g * interval '90 days' / $2::int), now() - (g * interval '90 days' / $2::int), 1
     FROM generate_series(1, $2::int) AS g`,
    [userId, rows],
  );
  await pool.query(
    `INSERT INTO journal_entries (tx_id, account, amount_micros, kind) SELECT 'settle:x' || g, 'user:' || $1, -(10 + g % 5000), 'usage' FROM generate_series(1, $2::int) AS g`,
    [userId, rows],
  );
  // What settlement keeps as it goes: the wallet's total and the daily rollup (built here in bulk).
  await pool.query("UPDATE wallets SET spent_micros = (SELECT -SUM(amount_micros) FROM journal_entries WHERE account = 'user:' || $1) WHERE user_id = $1", [
    userId,
  ]);
  await pool.query(
    `INSERT INTO usage_daily (user_id, day, model, spent_micros, requests)
     SELECT user_id, (settled_at AT TIME ZONE 'UTC')::date, model, SUM(charge_micros), COUNT(*) FROM reservations WHERE user_id = $1 GROUP BY 1, 2, 3`,
    [userId],
  );
  console.error(`seeded ${rows} rows for ${userId} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { userId, keyIds };
}

try {
  const me = await seedUser(ROWS);
  await seedUser(OTHER_ROWS);
  await pool.query("ANALYZE");
  const usage = (await import(USAGE_MODULE)) as UsageModule;
  const actor: Actor = { userId: me.userId, email: "bench", name: null, isOwner: false, isAdmin: false };
  const deep = (await usage.usagePage(actor, {}, undefined, 1)).at(0)!;
  const day = (offset: number) => new Date(Date.now() - offset * 86_400_000).toISOString().slice(0, 10);
  const cases: [string, () => Promise<unknown>][] = [
    ["dashboard: balance", () => usage.balance(actor)],
    ["dashboard: spend per day (30 days)", () => usage.spendByDay(actor, 30)],
    ["dashboard: spend by model (30 days)", () => usage.spendByModel(actor, 30)],
    ["usage: first page", () => usage.usagePage(actor, {})],
    [
      "usage: a page 500,000 rows deep",
      async () => usage.usagePage(actor, {}, { startedAt: new Date(deep.startedAt.getTime() - 45 * 86_400_000), id: "req_~" }),
    ],
    ["usage: filtered by key and model", () => usage.usagePage(actor, { keyId: me.keyIds[1], model: "gpt-4o" })],
    ["usage: one UTC day", () => usage.usagePage(actor, { from: day(40), to: day(40) })],
  ];
  const results = [];
  for (const [name, run] of cases) {
    await run();
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      await run();
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    results.push({
      query: name,
      p50Ms: +times[Math.floor(RUNS * 0.5)]!.toFixed(2),
      p95Ms: +times[Math.floor(RUNS * 0.95)]!.toFixed(2),
      maxMs: +times.at(-1)!.toFixed(2),
    });
  }
  console.table(results);
  const out = { rows: ROWS, otherRows: OTHER_ROWS, runs: RUNS, targetP95Ms: 300, results, at: new Date().toISOString() };
  await mkdir(join(import.meta.dirname, "results"), { recursive: true });
  await writeFile(join(import.meta.dirname, "results", "portal.json"), JSON.stringify(out, null, 2) + "\n");
} finally {
  await pool.end();
  await database.drop();
}
process.exit(0);
