/**
 * `npx tsx bench/settle_cpu.ts`: PostgreSQL CPU per 1,000 settlements written the way the gateway writes them now
 * (`wellspring_settle_batch`: settlements, journal, rollups and request records in one statement per batch, the
 * settlement rows returned) against the way it wrote them before (the per-request `wellspring_settle_leased` called
 * once per row of the batch, the request records in their own multi-row insert, and the sealer reading the settled
 * rows back) — the CPU of the one database backend doing the work (/proc), on a fresh test database, alternated
 * in rounds. BENCH_SETTLEMENTS (default 4000) per round and way, BENCH_BATCH (default 32) per statement, BENCH_USERS (default 32) wallets the settlements are spread over.
 */
import { readFile } from "node:fs/promises";
import pg from "pg";
import { newId } from "@wellspring/db";
import { createTestDatabase } from "../e2e/stack/harness.ts";
import { Ledger, settlementRow, type Settlement } from "../gateway/src/billing/ledger.ts";
import { testMeta, testRecordJson } from "../gateway/src/billing/testing/settlements.ts";

const N = Number(process.env.BENCH_SETTLEMENTS ?? 4000);
const BATCH = Number(process.env.BENCH_BATCH ?? 32);
const USERS = Number(process.env.BENCH_USERS ?? 32);
const ROUNDS = 3;

const database = await createTestDatabase();
const pool = new pg.Pool({ connectionString: database.url, max: 1 });
const ledger = new Ledger(pool);
const ticks = async (pid: number) => {
  const f = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return Number(f[11]) + Number(f[12]); // utime + stime, clock ticks (100/s)
};
try {
  const backend = (await pool.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
  const users: { id: string; key: string; lease: string }[] = [];
  for (let i = 0; i < USERS; i++) {
    const id = newId("usr");
    const key = newId("key");
    await pool.query("INSERT INTO users (id, email, updated_at) VALUES ($1, $2, now())", [id, `${id}@bench.test`]);
    await pool.query("INSERT INTO virtual_keys (id, user_id, name, hash, prefix) VALUES ($1, $2, 'bench', $1, 'ws_')", [key, id]);
    await ledger.credit(id, 10n ** 12n, "grant", `grant:${id}`);
    const lease = newId("lse");
    await ledger.lease(lease, id, "gw_bench", 10n ** 11n, 1n);
    users.push({ id, key, lease });
  }
  const make = (i: number) => {
    const u = users[i % USERS]!;
    const requestId = newId("req");
    const settlement: Settlement = {
      chargeMicros: 150n,
      ownerId: null,
      ownerEarningMicros: 0n,
      officialMicros: 150n,
      planBps: 10_000,
      usage: { inputTokens: 12, outputTokens: 40, cachedInputTokens: 0 },
      estimated: false,
      endCause: "completed",
      lease: { leaseId: u.lease, userId: u.id, reservedMicros: 400n, meta: testMeta() },
    };
    const record = testRecordJson(requestId, u.id, u.key, 150n);
    return { requestId, settlement, record, userId: u.id };
  };
  const batches = () => {
    const all = Array.from({ length: N }, (_, i) => make(i));
    const out: (typeof all)[] = [];
    for (let i = 0; i < all.length; i += BATCH) out.push(all.slice(i, i + BATCH).sort((a, b) => (a.userId < b.userId ? -1 : 1)));
    return out;
  };
  const ways = {
    async before(batch: ReturnType<typeof make>[]) {
      const cols = Array.from({ length: 24 }, (_, c) => batch.map((x) => settlementRow(x.requestId, x.settlement)[c]));
      await pool.query(
        `SELECT s.outcome FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::int[], $9::int[], $10::int[],
           $11::bool[], $12::"EndCause"[], $13::int[], $14::text[], $15::text[], $16::text[], $17::text[], $18::"AgentTier"[], $19::int[],
           $20::bigint[], $21::int[], $22::int[], $23::int[], $24::int[]) WITH ORDINALITY AS x(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
           a16, a17, a18, a19, a20, a21, a22, a23, a24, ord)
         CROSS JOIN LATERAL wellspring_settle_leased(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24) s
         ORDER BY x.ord`,
        cols,
      );
      await pool.query(
        "INSERT INTO request_records SELECT * FROM json_populate_recordset(NULL::request_records, $1::json) ON CONFLICT (id, started_at) DO NOTHING",
        [`[${batch.map((x) => x.record).join(",")}]`],
      );
      await pool.query("SELECT request_id AS id, row_to_json(r)::text AS j FROM reservations r WHERE request_id = ANY($1) AND status = 'settled'", [
        batch.map((x) => x.requestId),
      ]);
    },
    async after(batch: ReturnType<typeof make>[]) {
      await ledger.settleMany(batch);
    },
  };
  const result: Record<string, number[]> = { before: [], after: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, write] of Object.entries(ways)) {
      const work = batches();
      const t0 = await ticks(backend);
      for (const b of work) await write(b);
      result[name]!.push(+((((await ticks(backend)) - t0) / 100 / N) * 1000).toFixed(3));
    }
  }
  console.log(JSON.stringify({ at: new Date().toISOString(), settlements: N, batch: BATCH, postgresCpuSecondsPer1000: result }));
} finally {
  await pool.end();
  await database.drop();
}
