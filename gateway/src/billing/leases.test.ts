/**
 * Credit leases against a real PostgreSQL: requests claimed in memory on two gateways at once never claim
 * more than the wallet holds; settlements charge each request once from its lease; an idle lease goes back;
 * the leases of a gateway that stopped reporting are released by another at its next heartbeat; a lease is
 * never claimed from once the ledger has not confirmed it for `validForMs`; settlements written while the
 * database is away go to the spool and land exactly once when it is back; the ledger audit holds throughout.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, seedPriceTableIfEmpty } from "@wellspring/db";
import { createTestDatabase, settledWallet, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { startTcpProxy } from "../../../e2e/stack/tcp_proxy.ts";
import { Ledger } from "./ledger.ts";
import { LedgerHealth, LedgerUnavailableError } from "./health.ts";
import { CreditLeases, type LeaseClaim, type LeaseOptions } from "./leases.ts";
import { SETTLEMENT_CODEC, SettlementBatcher, type SpooledSettlement } from "./settlement_batcher.ts";
import { Spool } from "./spool.ts";
import { createLogger } from "../log.ts";
import { testSettlement, usageCosting } from "./testing/settlements.ts";

let database: TestDatabase;
let pool: pg.Pool;
let ledger: Ledger;
const log = createLogger({ proc: "test" }, "error");
beforeAll(async () => {
  database = await createTestDatabase();
  await seedPriceTableIfEmpty(database.db);
  pool = new pg.Pool({ connectionString: database.url, max: 8 });
  pool.on("error", () => {});
  ledger = new Ledger(pool);
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const options = (o: Partial<LeaseOptions> = {}): LeaseOptions => ({
  sliceMicros: 100_000n,
  idleReleaseMs: 50,
  renewIntervalMs: 60_000,
  validForMs: 120_000,
  gatewayDeadAfterMs: 240_000,
  ...o,
});

function gateway(id: string, o: Partial<LeaseOptions> = {}, l: Ledger = ledger, now?: () => number) {
  const health = new LedgerHealth(log);
  return { health, leases: new CreditLeases(l, id, "hub_test", health, log, options(o), now), batcher: new SettlementBatcher(l, log, health) };
}

async function fundedUser(micros: bigint): Promise<string> {
  const id = newId("usr");
  await database.db.user.create({ data: { id, email: `${id}@lease.test` } });
  await ledger.credit(id, micros, "grant", `grant:${id}`);
  return id;
}

async function wallet(userId: string) {
  const r = await pool.query<{ available_micros: string; reserved_micros: string; spent_micros: string }>(
    "SELECT available_micros, reserved_micros, spent_micros FROM wallets WHERE user_id = $1",
    [userId],
  );
  const w = r.rows[0]!;
  return { available: BigInt(w.available_micros), reserved: BigInt(w.reserved_micros), spent: BigInt(w.spent_micros) };
}

/** Settles a claimed request costing `costMicros` through the batcher, as the proxy does, and tells the leases. */
function settle(gw: { leases: CreditLeases; batcher: SettlementBatcher }, claim: LeaseClaim, costMicros: bigint) {
  const s = testSettlement(claim, usageCosting(costMicros));
  const written = gw.batcher.settle(claim.userId, "gpt-4o-mini", newId("req"), s);
  gw.leases.finish(claim, s.chargeMicros, written);
  return written.then(() => s.chargeMicros);
}

describe("credit leases", () => {
  it("two gateways claiming at once never hold more than the wallet; every charge lands once; idle leases go back", async () => {
    const funding = 1_000_000n;
    const perRequest = 7_000n;
    const userId = await fundedUser(funding);
    const gateways = [gateway(newId("gw")), gateway(newId("gw"))];
    // Each gateway serves one request first (so each holds a lease however the burst below is scheduled).
    const first = await Promise.all(gateways.map(async (gw) => ({ gw, claim: await gw.leases.claim(userId, perRequest) })));
    // Then 400 claims at once, 200 per gateway: the wallet covers 142 in all.
    const burst = await Promise.all(
      Array.from({ length: 400 }, async (_, i) => ({ gw: gateways[i % 2]!, claim: await gateways[i % 2]!.leases.claim(userId, perRequest) })),
    );
    const claims = [...first, ...burst];
    const granted = claims.filter((c): c is { gw: (typeof gateways)[number]; claim: LeaseClaim } => c.claim !== null);
    expect(BigInt(granted.length) * perRequest).toBeLessThanOrEqual(funding);
    expect(granted.length).toBeGreaterThan(100); // most of the balance is usable, split across both gateways
    expect(new Set(granted.map((c) => c.claim.leaseId)).size).toBeGreaterThanOrEqual(2);
    const w = await wallet(userId);
    expect(w.available + w.reserved).toBe(funding);
    // Each request costs part of its claim; the rest is free again.
    const charges = await Promise.all(granted.map((c, i) => settle(c.gw, c.claim, BigInt(i % 3) * 1_000n)));
    const spent = charges.reduce((a, b) => a + b, 0n);
    // The idle release (50 ms) runs on a timer; under a loaded test run it may take a little longer.
    for (let i = 0; i < 100 && !gateways.every((g) => g.leases.active === 0); i++) await sleep(50);
    expect(gateways.every((g) => g.leases.active === 0)).toBe(true);
    await settledWallet(pool, userId);
    expect(await wallet(userId)).toEqual({ available: funding - spent, reserved: 0n, spent });
    const rows = await pool.query<{ n: number; s: string }>(
      "SELECT count(*)::int AS n, SUM(charge_micros)::text AS s FROM reservations WHERE user_id = $1 AND status = 'settled'",
      [userId],
    );
    expect(rows.rows[0]).toEqual({ n: granted.length, s: spent.toString() });
    expect((await ledger.audit()).problems).toEqual([]);
    for (const g of gateways) await g.leases.close();
  });

  it("freed money is claimable again before the settlement is written, without exceeding the lease", async () => {
    const userId = await fundedUser(50_000n);
    const gw = gateway(newId("gw"), { sliceMicros: 50_000n, idleReleaseMs: 60_000 });
    let spent = 0n;
    // 100 requests one after another, each claiming 20,000 of a 50,000 wallet (a lease of at most half, then top-ups).
    const written: Promise<bigint>[] = [];
    for (let i = 0; i < 100; i++) {
      const c = await gw.leases.claim(userId, 20_000n);
      expect(c).not.toBeNull();
      written.push(settle(gw, c!, 100n));
    }
    for (const w of await Promise.all(written)) spent += w;
    await gw.batcher.drain();
    const w = await wallet(userId);
    expect(w.spent).toBe(spent);
    expect(w.available + w.reserved).toBe(50_000n - spent);
    await gw.leases.close();
    expect(await wallet(userId)).toEqual({ available: 50_000n - spent, reserved: 0n, spent });
    expect((await ledger.audit()).problems).toEqual([]);
  });

  it("a claim can grow (a body larger than first thought) from the same lease, and is refused past the balance", async () => {
    const userId = await fundedUser(100_000n);
    const gw = gateway(newId("gw"), { sliceMicros: 10_000n });
    const claim = (await gw.leases.claim(userId, 4_000n))!;
    expect(await gw.leases.grow(claim, 30_000n)).toBe(true); // needs a top-up
    expect(claim.amountMicros).toBe(34_000n);
    expect(await gw.leases.grow(claim, 1_000_000n)).toBe(false);
    expect(claim.amountMicros).toBe(34_000n);
    const w = await wallet(userId);
    expect(w.reserved).toBeGreaterThanOrEqual(34_000n);
    await settle(gw, claim, 20_000n);
    await gw.leases.close();
    expect((await wallet(userId)).reserved).toBe(0n);
    expect((await ledger.audit()).problems).toEqual([]);
  });

  it("a gateway that stops reporting has its leases released by another; a late settlement is still charged in full", async () => {
    const userId = await fundedUser(30_000n);
    const deadId = newId("gw");
    const dead = gateway(deadId, { idleReleaseMs: 60_000 });
    await dead.leases.heartbeat();
    const claim = (await dead.leases.claim(userId, 10_000n))!;
    expect((await wallet(userId)).reserved).toBeGreaterThan(0n);
    // The gateway goes silent: its last report is older than the living gateway's dead-after bound.
    await pool.query("UPDATE gateways SET last_seen_at = now() - interval '1 hour' WHERE id = $1", [deadId]);
    const alive = gateway(newId("gw"), { renewIntervalMs: 100, validForMs: 1_000, gatewayDeadAfterMs: 2_000 });
    await alive.leases.heartbeat();
    const swept = await pool.query<{ released: boolean }>("SELECT released FROM credit_leases WHERE id = $1", [claim.leaseId]);
    expect(swept.rows[0]!.released).toBe(true);
    expect(await wallet(userId)).toEqual({ available: 30_000n, reserved: 0n, spent: 0n });
    // Meanwhile the user spent most of the balance through another gateway.
    const elsewhere = (await alive.leases.claim(userId, 10_000n))!;
    const spentElsewhere = await settle(alive, elsewhere, 26_000n);
    await alive.leases.close();
    // The dead gateway's request ends after all (its spool is replayed): charged in full, the balance goes
    // below zero by what was not covered, recorded as the request's overdraft and flagged.
    const late = testSettlement(claim, usageCosting(9_000n));
    expect(await ledger.settle(newId("req"), late)).toMatchObject({ outcome: "settled", chargedMicros: late.chargeMicros });
    const w = await wallet(userId);
    expect(w).toEqual({ available: 30_000n - spentElsewhere - late.chargeMicros, reserved: 0n, spent: spentElsewhere + late.chargeMicros });
    expect(w.available).toBeLessThan(0n);
    const flag = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM risk_flags WHERE kind = 'balance_overdrawn' AND subject = $1", [
      `user:${userId}`,
    ]);
    expect(flag.rows[0]!.n).toBe(1);
    // A released lease is never topped up again.
    expect(await ledger.lease(claim.leaseId, userId, deadId, 1_000n, 1_000n)).toBe(0n);
    expect((await ledger.audit()).problems).toEqual([]);
    await dead.leases.close();
  });

  it("a burst of 1,000 concurrent claims on one wallet needs a handful of top-ups: the slice grows with what is claimed", async () => {
    const userId = await fundedUser(100_000_000n);
    let topUps = 0;
    const counting = Object.create(ledger) as Ledger;
    counting.lease = (...args: Parameters<Ledger["lease"]>) => {
      topUps++;
      return ledger.lease(...args);
    };
    const gw = gateway(newId("gw"), { sliceMicros: 1_000_000n }, counting);
    const claims = await Promise.all(Array.from({ length: 1_000 }, () => gw.leases.claim(userId, 20_000n)));
    expect(claims.every((c) => c !== null)).toBe(true);
    // 1,000 × 20,000 = 20,000,000 claimed: 20 top-ups at a fixed 1,000,000 slice; doubling needs 6.
    expect(topUps).toBeLessThanOrEqual(8);
    const w = await wallet(userId);
    expect(w.reserved).toBeGreaterThanOrEqual(20_000_000n);
    expect(w.reserved).toBeLessThanOrEqual(50_000_000n); // never more than half the balance
    const charged = await Promise.all(claims.map((c) => settle(gw, c!, 1n)));
    await gw.leases.close();
    const spent = charged.reduce((a, b) => a + b, 0n);
    expect(await wallet(userId)).toEqual({ available: 100_000_000n - spent, reserved: 0n, spent });
  });

  it("a lease released while its gateway runs is forgotten at the next heartbeat; an unwritable settlement is reported, not held", async () => {
    const userId = await fundedUser(1_000_000n);
    const gw = gateway(newId("gw"), { idleReleaseMs: 150, renewIntervalMs: 100, validForMs: 1_000, gatewayDeadAfterMs: 2_000 });
    const first = (await gw.leases.claim(userId, 10_000n))!;
    // Released behind its back (as a sweep would, had it been silent).
    await ledger.releaseLease(first.leaseId, null);
    await gw.leases.heartbeat();
    const second = (await gw.leases.claim(userId, 10_000n))!;
    expect(second.leaseId).not.toBe(first.leaseId);
    // A request on the new lease whose settlement can never be written: the lease still goes back once idle,
    // and the audit names the missing settlement.
    const third = (await gw.leases.claim(userId, 10_000n))!;
    expect(third.leaseId).toBe(second.leaseId);
    gw.leases.finish(third, 5_000n, Promise.reject(new Error("neither the database nor the spool took it")));
    const spent = await settle(gw, second, 2_000n);
    for (let i = 0; i < 100 && gw.leases.active > 0; i++) await sleep(50);
    expect(gw.leases.active).toBe(0);
    await settledWallet(pool, userId);
    expect(await wallet(userId)).toEqual({ available: 1_000_000n - spent, reserved: 0n, spent });
    const problems = (await ledger.audit()).problems;
    expect(problems).toEqual([expect.stringMatching(new RegExp(`lease ${second.leaseId}: 2 requests were claimed against it, 1 settled`))]);
    // (the test's own lost settlement: mark it written for the tests that follow)
    await pool.query("UPDATE credit_leases SET requests_claimed = 1 WHERE id = $1", [second.leaseId]);
    await gw.leases.close();
  });

  it("a claim the balance cannot cover is refused and holds nothing", async () => {
    const userId = await fundedUser(5_000n);
    const gw = gateway(newId("gw"));
    expect(await gw.leases.claim(userId, 6_000n)).toBeNull();
    expect(await wallet(userId)).toEqual({ available: 5_000n, reserved: 0n, spent: 0n });
    const ok = await gw.leases.claim(userId, 5_000n);
    expect(ok?.amountMicros).toBe(5_000n);
    expect(await gw.leases.claim(userId, 1n)).toBeNull();
    await gw.leases.close();
  });

  it("with the database gone: claims stop once the leases are not confirmed, settlements spool, and land exactly once when it is back", async () => {
    const userId = await fundedUser(1_000_000n);
    const proxy = await startTcpProxy({ host: "127.0.0.1", port: Number(new URL(database.url).port || 5432) });
    const cutPool = new pg.Pool({ connectionString: proxy.via(database.url), max: 4, connectionTimeoutMillis: 1_000, query_timeout: 2_000 });
    cutPool.on("error", () => {});
    const cutLedger = new Ledger(cutPool);
    const spoolDir = await mkdtemp(join(tmpdir(), "ws-spool-"));
    const gatewayId = newId("gw");
    const health = new LedgerHealth(log);
    let clock = Date.now();
    const leases = new CreditLeases(
      cutLedger,
      gatewayId,
      "hub_test",
      health,
      log,
      options({ renewIntervalMs: 60_000, validForMs: 120_000, gatewayDeadAfterMs: 240_000 }),
      () => clock,
    );
    const spool = new Spool<SpooledSettlement>(spoolDir, gatewayId, "settlements", SETTLEMENT_CODEC, log);
    await spool.open();
    const batcher = new SettlementBatcher(cutLedger, log, health, spool);
    try {
      await leases.heartbeat();
      const before = (await leases.claim(userId, 10_000n))!;
      proxy.cut();
      // Requests already held, and new ones the lease covers, still run; their settlements go to the spool.
      const during = (await leases.claim(userId, 10_000n))!;
      expect(during.leaseId).toBe(before.leaseId);
      const charges: bigint[] = [];
      const outcomes = await Promise.all(
        [before, during].map(async (c, i) => {
          const s = testSettlement(c, usageCosting(BigInt(1_000 + i)));
          charges.push(s.chargeMicros);
          const written = batcher.settle(userId, "gpt-4o-mini", `req_spool_${i}_${userId}`, s);
          leases.finish(c, s.chargeMicros, written);
          return written;
        }),
      );
      expect(outcomes).toEqual([{ outcome: "spooled" }, { outcome: "spooled" }]);
      expect(health.up).toBe(false);
      expect(spool.depth).toBe(2);
      const lines = (await readFile(join(spoolDir, `${gatewayId}.settlements.jsonl`), "utf8")).trim().split("\n");
      expect(lines).toHaveLength(2);
      // A top-up cannot be granted; and once the leases are older than validForMs, not even the held slice is used.
      await expect(leases.claim(userId, 10_000_000n)).rejects.toBeInstanceOf(LedgerUnavailableError);
      clock += 120_001;
      await expect(leases.claim(userId, 1n)).rejects.toBeInstanceOf(LedgerUnavailableError);
      // The database comes back: the heartbeat confirms the leases, the spool is replayed.
      proxy.restore();
      await leases.heartbeat();
      expect(health.up).toBe(true);
      await batcher.replay();
      expect(spool.depth).toBe(0);
      // A second replay of the same entries (a crash after writing, before the spool shrank) charges nothing more.
      const spent = charges.reduce((a, b) => a + b, 0n);
      const again = await cutLedger.settleMany(
        lines.map((l) => SETTLEMENT_CODEC.decode(JSON.parse(l))!).map((s) => ({ requestId: s.requestId, settlement: s.settlement })),
      );
      expect(again.map((r) => r.outcome)).toEqual(["already_settled", "already_settled"]);
      await leases.close();
      expect(await wallet(userId)).toEqual({ available: 1_000_000n - spent, reserved: 0n, spent });
      expect((await ledger.audit()).problems).toEqual([]);
    } finally {
      await batcher.drain();
      await spool.close();
      await cutPool.end();
      await proxy.close();
      await rm(spoolDir, { recursive: true, force: true });
    }
  });

  it("a spool left by a dead gateway is taken over and replayed by a living one", async () => {
    const userId = await fundedUser(100_000n);
    const spoolDir = await mkdtemp(join(tmpdir(), "ws-spool-"));
    const deadId = newId("gw");
    const dead = gateway(deadId, { idleReleaseMs: 60_000 });
    await dead.leases.heartbeat();
    const claim = (await dead.leases.claim(userId, 5_000n))!;
    const theirs = new Spool<SpooledSettlement>(spoolDir, deadId, "settlements", SETTLEMENT_CODEC, log);
    await theirs.open();
    const s = testSettlement(claim, usageCosting(3_000n));
    await theirs.append([{ requestId: `req_adopt_${userId}`, userId, model: "gpt-4o-mini", settlement: s, record: null }]);
    await theirs.close();
    // The gateway dies (no more reports); a living one with the same spool folder takes its file over.
    await pool.query("UPDATE gateways SET last_seen_at = now() - interval '1 hour' WHERE id = $1", [deadId]);
    const aliveId = newId("gw");
    const mine = new Spool<SpooledSettlement>(spoolDir, aliveId, "settlements", SETTLEMENT_CODEC, log);
    await mine.open();
    const batcher = new SettlementBatcher(ledger, log, new LedgerHealth(log), mine, 30_000);
    await batcher.replay();
    expect(mine.depth).toBe(0);
    const row = await pool.query<{ charge_micros: string }>("SELECT charge_micros FROM reservations WHERE request_id = $1", [`req_adopt_${userId}`]);
    expect(row.rows[0]?.charge_micros).toBe(String(s.chargeMicros));
    expect(await mine.otherFiles()).toEqual([]);
    await batcher.drain();
    await mine.close();
    await rm(spoolDir, { recursive: true, force: true });
    await pool.query("UPDATE credit_leases SET requests_claimed = 1 WHERE id = $1", [claim.leaseId]);
    await dead.leases.close();
  });
});
