/**
 * `wellspring_settle_batch` (one set-based statement per batch) against `wellspring_settle_leased` (one call per
 * request, the rules it replaces), on twin ledgers: the same wallets, leases and settlements — leases that run dry
 * mid-batch, released leases, charges beyond the reservation, wallets taken below zero, repeats, unknown leases —
 * must leave the same outcomes, settlement rows, wallets, leases, journal, rollups and flags. And the request records
 * go in with their settlements; one the database refuses is dropped and reported without stopping the money.
 */
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { Ledger, settlementRow, type Settlement } from "./ledger.ts";
import { testMeta, testRecordJson } from "./testing/settlements.ts";

let database: TestDatabase;
let pool: pg.Pool;
let ledger: Ledger;
beforeAll(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 4 });
  pool.on("error", () => {});
  ledger = new Ledger(pool);
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

const item = fc.record({
  user: fc.nat({ max: 2 }),
  lease: fc.nat({ max: 3 }), // 3: a lease that is not the user's
  request: fc.nat({ max: 39 }), // a small pool: repeats in the batch, and of those settled before it
  reserved: fc.bigInt({ min: 0n, max: 4_000n }),
  charge: fc.bigInt({ min: 0n, max: 6_000n }),
  owner: fc.boolean(),
  earningBps: fc.constantFrom(0, 7_000, 9_000, 12_000),
});
const world = fc.record({
  funding: fc.array(fc.bigInt({ min: 0n, max: 20_000n }), { minLength: 3, maxLength: 3 }),
  leaseWant: fc.array(fc.bigInt({ min: 1n, max: 8_000n }), { minLength: 9, maxLength: 9 }),
  released: fc.array(fc.boolean(), { minLength: 9, maxLength: 9 }),
  before: fc.array(item, { maxLength: 4 }),
  batch: fc.array(item, { minLength: 1, maxLength: 40 }),
});
type World = typeof world extends fc.Arbitrary<infer T> ? T : never;
type Item = World["batch"][number];

/** Builds one twin: its own users, wallets and leases; returns the settlement for an item. */
async function build(w: World, tag: string) {
  const users = w.funding.map((_, i) => `usr_${tag}_${i}`);
  const owner = `usr_${tag}_owner`;
  const leases: string[][] = [];
  for (const [u, user] of users.entries()) {
    if (w.funding[u]! > 0n) await ledger.credit(user, w.funding[u]!, "grant", `grant:${user}`);
    leases.push([]);
    for (let l = 0; l < 3; l++) {
      const id = `lse_${tag}_${u}_${l}`;
      await ledger.lease(id, user, "gw_twin", w.leaseWant[u * 3 + l]!, 1n);
      if (w.released[u * 3 + l]) await ledger.releaseLease(id, null);
      leases[u]!.push(id);
    }
  }
  const settlement = (x: Item): { requestId: string; settlement: Settlement } => {
    const user = users[x.user]!;
    const leaseId = x.lease === 3 ? leases[(x.user + 1) % 3]![0]! : leases[x.user]![x.lease]!;
    const ownerId = x.owner ? owner : null;
    return {
      requestId: `req_${tag}_${x.request}`,
      settlement: {
        chargeMicros: x.charge,
        ownerId,
        ownerEarningMicros: (x.charge * BigInt(x.earningBps)) / 10_000n,
        officialMicros: x.charge,
        planBps: 10_000,
        usage: { inputTokens: 1, outputTokens: Number(x.charge), cachedInputTokens: 0 },
        estimated: false,
        endCause: "completed",
        lease: { leaseId, userId: user, reservedMicros: x.reserved, meta: testMeta({ ownerId }) },
      },
    };
  };
  return { users, owner, settlement };
}

/** The old way: one `wellspring_settle_leased` call per settlement, in order. */
async function settleOneByOne(items: { requestId: string; settlement: Settlement }[]) {
  const out: { outcome: string; charged: string; released: string }[] = [];
  for (const { requestId, settlement: s } of items) {
    const r = await pool.query<{ outcome: string; charged: string; released: string }>(
      `SELECT outcome, charged::text, released::text FROM wellspring_settle_leased($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::"EndCause", $13, $14, $15,
         $16, $17, $18::"AgentTier", $19, $20, $21, $22, $23, $24)`,
      settlementRow(requestId, s),
    );
    out.push(r.rows[0]!);
  }
  return out;
}

/** Everything the settlements touched, with the twin's tag taken out of ids so the twins compare. */
async function books(tag: string) {
  const strip = (rows: unknown[]): unknown => JSON.parse(JSON.stringify(rows).replaceAll(`_${tag}_`, "_T_")) as unknown;
  const q = async (sql: string): Promise<unknown> => strip((await pool.query(sql, [`%\\_${tag}\\_%`])).rows);
  return {
    reservations: await q(`SELECT request_id, user_id, lease_id, amount_micros::text, charge_micros::text, earning_micros::text, lease_micros::text,
      overdraft_micros::text, owner_id FROM reservations WHERE request_id LIKE $1 ORDER BY request_id`),
    wallets: await q(`SELECT user_id, available_micros::text, reserved_micros::text, spent_micros::text FROM wallets WHERE user_id LIKE $1 ORDER BY user_id`),
    leases: await q(`SELECT id, amount_micros::text, charged_micros::text, released FROM credit_leases WHERE id LIKE $1 ORDER BY id`),
    journal: await q(
      `SELECT tx_id, account, kind, amount_micros::text FROM journal_entries WHERE tx_id LIKE 'settle:%' AND tx_id LIKE $1 ORDER BY tx_id, kind`,
    ),
    daily: await q(`SELECT user_id, model, spent_micros::text, requests FROM usage_daily WHERE user_id LIKE $1 ORDER BY user_id, model`),
    flags: await q(`SELECT kind, subject, raised_count, evidence->>'requestId' AS last_request, evidence->>'availableMicros' AS available,
      evidence->>'overdraftMicros' AS overdraft, evidence->>'beyondMicros' AS beyond FROM risk_flags WHERE subject LIKE $1 ORDER BY kind, subject`),
  };
}

describe("settle batch", () => {
  it("settles a batch exactly as one call per request would, row for row", async () => {
    const runs = fc.sample(world, { numRuns: 30, seed: 1702 });
    let settled = 0;
    let overdrawn = 0;
    let partial = 0;
    for (const [run, w] of runs.entries()) {
      const a = await build(w, `a${run}x`);
      const b = await build(w, `b${run}x`);
      // Settled before the batch: the batch finds them already settled.
      await ledger.settleMany(w.before.map(a.settlement));
      await settleOneByOne(w.before.map(b.settlement));
      const batch = await ledger.settleMany(w.batch.map(a.settlement));
      const single = await settleOneByOne(w.batch.map(b.settlement));
      expect(batch.map((r) => r.outcome)).toEqual(single.map((r) => r.outcome));
      expect(batch.map((r) => (r.outcome === "settled" ? [r.chargedMicros.toString(), r.releasedMicros.toString()] : null))).toEqual(
        single.map((r) => (r.outcome === "settled" ? [r.charged, r.released] : null)),
      );
      expect(await books(`a${run}x`)).toEqual(await books(`b${run}x`));
      // Each settled row comes back as the database holds it (what the hub seals without reading it again).
      for (const [i, r] of batch.entries()) {
        if (r.outcome === "unknown_request") continue;
        const id = `req_a${run}x_${w.batch[i]!.request}`;
        const row = await pool.query<{ j: string }>("SELECT row_to_json(r)::text AS j FROM reservations r WHERE request_id = $1", [id]);
        expect(r.reservation).toBe(row.rows[0]!.j);
      }
      settled += batch.filter((r) => r.outcome === "settled").length;
      overdrawn += (await pool.query(`SELECT 1 FROM reservations WHERE request_id LIKE $1 AND overdraft_micros > 0`, [`req\\_a${run}x\\_%`])).rowCount!;
      // A lease that ran dry within the batch: the request took part of what it reserved from it.
      partial += (
        await pool.query(`SELECT 1 FROM reservations WHERE request_id LIKE $1 AND lease_micros > 0 AND lease_micros < LEAST(charge_micros, amount_micros)`, [
          `req\\_a${run}x\\_%`,
        ])
      ).rowCount!;
    }
    // The sample covers what it claims to: many settlements, some of them overdrawn.
    expect(settled).toBeGreaterThan(80);
    expect(overdrawn).toBeGreaterThan(5);
    expect(partial).toBeGreaterThan(0);
    const unbalanced = await pool.query("SELECT tx_id FROM journal_entries GROUP BY tx_id HAVING SUM(amount_micros) <> 0");
    expect(unbalanced.rows).toEqual([]);
  }, 300_000);

  it("writes the requests' records with their settlements; a record the database refuses is dropped and reported, the money still lands", async () => {
    const userId = newId("usr");
    await pool.query(`INSERT INTO users (id, email, updated_at) VALUES ($1, $2, now())`, [userId, `${userId}@example.test`]);
    const keyId = newId("key");
    await pool.query(`INSERT INTO virtual_keys (id, user_id, name, hash, prefix) VALUES ($1, $2, 'k', $3, 'ws_')`, [keyId, userId, keyId]);
    await ledger.credit(userId, 10_000n, "grant", `grant:${userId}`);
    const leaseId = newId("lse");
    await ledger.lease(leaseId, userId, "gw_rec", 5_000n, 1n);
    const record = (id: string, key: string) => testRecordJson(id, userId, key, 100n);
    const settlement = (): Settlement => ({
      chargeMicros: 100n,
      ownerId: null,
      ownerEarningMicros: 0n,
      officialMicros: 100n,
      planBps: 10_000,
      usage: { inputTokens: 1, outputTokens: 2, cachedInputTokens: 0 },
      estimated: false,
      endCause: "completed",
      lease: { leaseId, userId, reservedMicros: 200n, meta: testMeta() },
    });
    const ids = [newId("req"), newId("req"), newId("req")];
    const first = record(ids[0]!, keyId);
    const dropped: [number, string | null][] = [];
    const results = await ledger.settleMany(
      [
        { requestId: ids[0]!, settlement: settlement(), record: first },
        { requestId: ids[1]!, settlement: settlement(), record: record(ids[1]!, "key_that_does_not_exist") },
        { requestId: ids[2]!, settlement: settlement(), record: null },
      ],
      (count, error) => dropped.push([count, error]),
    );
    expect(results.map((r) => r.outcome)).toEqual(["settled", "settled", "settled"]);
    expect(dropped).toHaveLength(1);
    expect(dropped[0]![0]).toBe(1);
    expect(dropped[0]![1]).toMatch(/foreign key/);
    const rows = await pool.query<{ id: string; user_charge_micros: string }>("SELECT id, user_charge_micros::text FROM request_records WHERE id = ANY($1)", [
      ids,
    ]);
    expect(rows.rows).toEqual([{ id: ids[0], user_charge_micros: "100" }]);
    // Settled again (a replay): nothing changes, no record twice, the settlement row comes back.
    const again = await ledger.settleMany([{ requestId: ids[0]!, settlement: settlement(), record: first }]);
    expect(again[0]).toMatchObject({ outcome: "already_settled", reservation: expect.stringContaining(ids[0]!) });
    expect((await pool.query("SELECT 1 FROM request_records WHERE id = $1", [ids[0]])).rowCount).toBe(1);
  });
});
