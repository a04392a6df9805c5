/**
 * Credit leases against a real PostgreSQL: requests claimed in memory on two gateways at once never claim
 * more than the wallet holds; settlements charge each request once from its lease; an idle lease goes back;
 * a lease whose gateway stopped is swept by another; a settlement arriving after its lease was swept
 * charges no more than the balance; the ledger audit holds throughout.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { createTestDatabase, settledWallet, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { Ledger, type ReserveMeta } from "./ledger.ts";
import { CreditLeases, type LeaseClaim, type LeaseOptions } from "./leases.ts";
import { SettlementBatcher } from "./settlement_batcher.ts";
import { createLogger } from "../log.ts";

let database: TestDatabase;
let pool: pg.Pool;
let ledger: Ledger;
const log = createLogger({ proc: "test" }, "error");
beforeAll(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 8 });
  pool.on("error", () => {});
  ledger = new Ledger(pool);
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const meta: ReserveMeta = { priceVer: 1, planId: "standard", api: "openai", model: "gpt-4o-mini", agentId: null, ownerId: null, tier: null, tierBps: null };
const options = (o: Partial<LeaseOptions> = {}): LeaseOptions => ({ sliceMicros: 100_000n, idleReleaseMs: 50, renewIntervalMs: 60_000, abandonedAfterMs: 600_000, ...o });

async function fundedUser(micros: bigint): Promise<string> {
  const id = newId("usr");
  await database.db.user.create({ data: { id, email: `${id}@lease.test` } });
  await ledger.credit(id, micros, "grant", `grant:${id}`);
  return id;
}

async function wallet(userId: string) {
  const r = await pool.query<{ available_micros: string; reserved_micros: string; spent_micros: string }>("SELECT available_micros, reserved_micros, spent_micros FROM wallets WHERE user_id = $1", [userId]);
  const w = r.rows[0]!;
  return { available: BigInt(w.available_micros), reserved: BigInt(w.reserved_micros), spent: BigInt(w.spent_micros) };
}

/** Settles a claimed request through the batcher, as the proxy does, and tells the leases. */
function settle(leases: CreditLeases, batcher: SettlementBatcher, claim: LeaseClaim, chargeMicros: bigint) {
  const requestId = newId("req");
  const written = batcher.settle(claim.userId, "gpt-4o-mini", requestId, {
    chargeMicros, ownerId: null, ownerEarningMicros: 0n, endCause: "completed",
    lease: { leaseId: claim.leaseId, userId: claim.userId, reservedMicros: claim.amountMicros, meta },
  });
  leases.finish(claim, chargeMicros, written);
  return written;
}

describe("credit leases", () => {
  it("two gateways claiming at once never hold more than the wallet; every charge lands once; idle leases go back", async () => {
    const funding = 1_000_000n;
    const perRequest = 7_000n;
    const userId = await fundedUser(funding);
    const gateways = ["gw_a", "gw_b"].map((id) => ({ leases: new CreditLeases(ledger, id, log, options()), batcher: new SettlementBatcher(ledger, log) }));
    // 400 claims at once, 200 per gateway: the wallet covers 142 of them.
    const claims = await Promise.all(Array.from({ length: 400 }, async (_, i) => ({ gw: gateways[i % 2]!, claim: await gateways[i % 2]!.leases.claim(userId, perRequest) })));
    const granted = claims.filter((c): c is { gw: (typeof gateways)[number]; claim: LeaseClaim } => c.claim !== null);
    expect(BigInt(granted.length) * perRequest).toBeLessThanOrEqual(funding);
    expect(granted.length).toBeGreaterThan(100); // most of the balance is usable, split across both gateways
    expect(new Set(granted.map((c) => c.claim.leaseId)).size).toBeGreaterThanOrEqual(2);
    const w = await wallet(userId);
    expect(w.available + w.reserved).toBe(funding);
    // Each request is charged part of its claim (i mod 3 thousandths); the rest is free again.
    const charges = granted.map((_, i) => BigInt(i % 3) * 1_000n);
    await Promise.all(granted.map((c, i) => settle(c.gw.leases, c.gw.batcher, c.claim, charges[i]!)));
    const spent = charges.reduce((a, b) => a + b, 0n);
    // The idle release (50 ms) runs on a timer; under a loaded test run it may take a little longer.
    for (let i = 0; i < 100 && !gateways.every((g) => g.leases.active === 0); i++) await sleep(50);
    expect(gateways.every((g) => g.leases.active === 0)).toBe(true);
    await settledWallet(pool, userId);
    expect(await wallet(userId)).toEqual({ available: funding - spent, reserved: 0n, spent });
    const rows = await pool.query<{ n: number; s: string }>("SELECT count(*)::int AS n, SUM(charge_micros)::text AS s FROM reservations WHERE user_id = $1 AND status = 'settled'", [userId]);
    expect(rows.rows[0]).toEqual({ n: granted.length, s: spent.toString() });
    expect((await ledger.audit()).problems).toEqual([]);
    for (const g of gateways) await g.leases.close();
  });

  it("freed money is claimable again before the settlement is written, without exceeding the lease", async () => {
    const userId = await fundedUser(50_000n);
    const leases = new CreditLeases(ledger, "gw_c", log, options({ sliceMicros: 50_000n, idleReleaseMs: 60_000 }));
    const batcher = new SettlementBatcher(ledger, log);
    let served = 0;
    // 100 requests one after another, each claiming 20,000 of a 50,000 wallet (a lease of at most half, then top-ups).
    for (let i = 0; i < 100; i++) {
      const c = await leases.claim(userId, 20_000n);
      expect(c).not.toBeNull();
      void settle(leases, batcher, c!, 100n);
      served++;
    }
    await batcher.drain();
    expect(served).toBe(100);
    const w = await wallet(userId);
    expect(w.spent).toBe(10_000n);
    expect(w.available + w.reserved).toBe(40_000n);
    await leases.close();
    expect(await wallet(userId)).toEqual({ available: 40_000n, reserved: 0n, spent: 10_000n });
    expect((await ledger.audit()).problems).toEqual([]);
  });

  it("a stopped gateway's lease is swept by another; a late settlement charges no more than the balance", async () => {
    const userId = await fundedUser(30_000n);
    const dead = new CreditLeases(ledger, "gw_dead", log, options({ idleReleaseMs: 60_000 }));
    const claim = (await dead.claim(userId, 10_000n))!;
    expect((await wallet(userId)).reserved).toBeGreaterThan(0n);
    // The gateway stops without giving the lease back; a live gateway sweeps leases not renewed for 1 ms.
    await pool.query("UPDATE credit_leases SET renewed_at = now() - interval '1 hour' WHERE id = $1", [claim.leaseId]);
    expect(await ledger.sweepLeases(1)).toBeGreaterThanOrEqual(1);
    const swept = await pool.query<{ released: boolean }>("SELECT released FROM credit_leases WHERE id = $1", [claim.leaseId]);
    expect(swept.rows[0]!.released).toBe(true);
    expect(await wallet(userId)).toEqual({ available: 30_000n, reserved: 0n, spent: 0n });
    // Meanwhile the user spent almost everything elsewhere: the late settlement takes what is left, no more.
    await pool.query("UPDATE wallets SET available_micros = 4000 WHERE user_id = $1", [userId]);
    await pool.query("INSERT INTO journal_entries (tx_id, account, amount_micros, kind) VALUES ('test:spend', $1, -26000, 'usage'), ('test:spend', 'platform:margin', 26000, 'margin')", [`user:${userId}`]);
    await pool.query("UPDATE wallets SET spent_micros = 26000 WHERE user_id = $1", [userId]);
    await pool.query("INSERT INTO usage_daily (user_id, day, model, spent_micros, requests) VALUES ($1, (now() AT TIME ZONE 'UTC')::date, 'other', 26000, 1)", [userId]);
    const r = await ledger.settle(newId("req"), { chargeMicros: 9_000n, ownerId: null, ownerEarningMicros: 0n, lease: { leaseId: claim.leaseId, userId, reservedMicros: 10_000n, meta } });
    expect(r).toEqual({ outcome: "settled", chargedMicros: 4_000n, releasedMicros: 6_000n });
    expect(await wallet(userId)).toEqual({ available: 0n, reserved: 0n, spent: 30_000n });
    // A released lease is never topped up again.
    expect(await ledger.lease(claim.leaseId, userId, "gw_dead", 1_000n, 1_000n)).toBe(0n);
    expect((await ledger.audit()).problems).toEqual([]);
    await dead.close();
  });

  it("a burst of 1,000 concurrent claims on one wallet needs a handful of top-ups: the slice grows with what is claimed", async () => {
    const userId = await fundedUser(100_000_000n);
    let topUps = 0;
    const counting = Object.create(ledger) as Ledger;
    counting.lease = (...args: Parameters<Ledger["lease"]>) => {
      topUps++;
      return ledger.lease(...args);
    };
    const leases = new CreditLeases(counting, "gw_e", log, options({ sliceMicros: 1_000_000n }));
    const claims = await Promise.all(Array.from({ length: 1_000 }, () => leases.claim(userId, 20_000n)));
    expect(claims.every((c) => c !== null)).toBe(true);
    // 1,000 × 20,000 = 20,000,000 claimed: 20 top-ups at a fixed 1,000,000 slice; doubling needs 6.
    expect(topUps).toBeLessThanOrEqual(8);
    const w = await wallet(userId);
    expect(w.reserved).toBeGreaterThanOrEqual(20_000_000n);
    expect(w.reserved).toBeLessThanOrEqual(50_000_000n); // never more than half the balance
    const batcher = new SettlementBatcher(ledger, log);
    await Promise.all(claims.map((c) => settle(leases, batcher, c!, 1n)));
    await leases.close();
    expect(await wallet(userId)).toEqual({ available: 100_000_000n - 1_000n, reserved: 0n, spent: 1_000n });
  });

  it("a lease swept while its gateway runs is forgotten at the next renewal; an unwritable settlement does not hold money forever", async () => {
    const userId = await fundedUser(1_000_000n);
    const leases = new CreditLeases(ledger, "gw_f", log, options({ idleReleaseMs: 150, renewIntervalMs: 100 }));
    const first = (await leases.claim(userId, 10_000n))!;
    // Another gateway's sweep closes it (this one could not renew in time).
    await ledger.releaseLease(first.leaseId);
    await sleep(400);
    const second = (await leases.claim(userId, 10_000n))!;
    expect(second.leaseId).not.toBe(first.leaseId);
    // A request on the new lease whose settlement can never be written: the lease still goes back once idle.
    const third = (await leases.claim(userId, 10_000n))!;
    expect(third.leaseId).toBe(second.leaseId);
    leases.finish(third, 5_000n, Promise.reject(new Error("database unreachable")));
    const batcher = new SettlementBatcher(ledger, log);
    await settle(leases, batcher, second, 2_000n);
    for (let i = 0; i < 100 && leases.active > 0; i++) await sleep(50);
    expect(leases.active).toBe(0);
    await settledWallet(pool, userId);
    expect(await wallet(userId)).toEqual({ available: 998_000n, reserved: 0n, spent: 2_000n });
    expect((await ledger.audit()).problems).toEqual([]);
    await leases.close();
  });

  it("a claim the balance cannot cover is refused and holds nothing", async () => {
    const userId = await fundedUser(5_000n);
    const leases = new CreditLeases(ledger, "gw_d", log, options());
    expect(await leases.claim(userId, 6_000n)).toBeNull();
    expect(await wallet(userId)).toEqual({ available: 5_000n, reserved: 0n, spent: 0n });
    const ok = await leases.claim(userId, 5_000n);
    expect(ok?.amountMicros).toBe(5_000n);
    expect(await leases.claim(userId, 1n)).toBeNull();
    await leases.close();
  });
});
