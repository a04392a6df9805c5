/**
 * The ledger against a real PostgreSQL: random interleavings of 1,000 requests on two gateways' leases
 * (concurrent, refused, failing, using more than they held, settled twice) leave the journal balanced, every
 * wallet equal to its funding less its charges, each request charged once and in full, every owner paid
 * official × tier, and the audit — which recomputes every charge from its recorded usage — clean.
 */
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, seedPriceTableIfEmpty } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { Ledger } from "./ledger.ts";
import { CreditLeases, type LeaseOptions } from "./leases.ts";
import { LedgerHealth } from "./health.ts";
import { SettlementBatcher } from "./settlement_batcher.ts";
import { createLogger } from "../log.ts";
import { officialCostMicros, ownerEarningMicros, TIER_BPS, userChargeMicros } from "./prices.ts";
import { testSettlement, usageCosting } from "./testing/settlements.ts";

let database: TestDatabase;
let pool: pg.Pool;
let ledger: Ledger;
const log = createLogger({ proc: "test" }, "error");
beforeAll(async () => {
  database = await createTestDatabase();
  await seedPriceTableIfEmpty(database.db);
  pool = new pg.Pool({ connectionString: database.url, max: 8 });
  pool.on("error", () => {}); // idle clients are terminated when the test database is dropped
  ledger = new Ledger(pool);
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

const options: LeaseOptions = { sliceMicros: 20_000n, idleReleaseMs: 50, renewIntervalMs: 60_000, validForMs: 120_000, gatewayDeadAfterMs: 240_000 };

function gateway(id: string, p: pg.Pool = pool) {
  const l = new Ledger(p);
  const health = new LedgerHealth(log);
  return { leases: new CreditLeases(l, id, "hub_test", health, log, options), batcher: new SettlementBatcher(l, log, health) };
}

const request = fc.record({
  user: fc.nat({ max: 19 }),
  reserve: fc.bigInt({ min: 1n, max: 5_000n }),
  /** What the provider reports it used, as a cost; may exceed what was reserved. */
  cost: fc.bigInt({ min: 0n, max: 7_000n }),
  tierBps: fc.constantFrom(9_000, 7_000, 5_000),
  planBps: fc.constantFrom(10_000, 12_000, 6_000),
  fate: fc.constantFrom("settle", "settle", "upstream_error", "abort_before_claim"),
  gateway: fc.nat({ max: 1 }),
  retrySettle: fc.boolean(),
});

describe("ledger", () => {
  it("random interleavings of 1,000 requests on two gateways keep every invariant", async () => {
    const runs = fc.sample(
      fc.tuple(
        fc.array(fc.bigInt({ min: 0n, max: 200_000n }), { minLength: 20, maxLength: 20 }),
        fc.array(request, { minLength: 1000, maxLength: 1000 }),
        fc.array(fc.nat(), { minLength: 1000, maxLength: 1000 }),
      ),
      { numRuns: 2, seed: 1201 },
    );
    for (const [funding, requests, order] of runs) {
      const users = funding.map(() => newId("usr"));
      await Promise.all(
        users.map(async (u, i) => {
          if (funding[i]! > 0n) {
            const txId = `grant:${u}`;
            expect(await ledger.credit(u, funding[i]!, "grant", txId)).toBe("credited");
            expect(await ledger.credit(u, funding[i]!, "grant", txId)).toBe("duplicate"); // retried grant
          }
        }),
      );
      const owner = newId("usr");
      const gateways = [gateway(newId("gw")), gateway(newId("gw"))];
      const outcomes = requests.map(() => ({ claimed: false, charged: 0n, earned: 0n }));
      // Run in a shuffled order, 50 at a time concurrently; some settlements race a retry of themselves.
      const sequence = requests.map((_, i) => i).sort((a, b) => order[a]! - order[b]! || a - b);
      for (let b = 0; b < sequence.length; b += 50) {
        await Promise.all(
          sequence.slice(b, b + 50).map(async (i) => {
            const r = requests[i]!;
            if (r.fate === "abort_before_claim") return;
            const gw = gateways[r.gateway]!;
            const claim = await gw.leases.claim(users[r.user]!, r.reserve);
            if (!claim) return;
            outcomes[i]!.claimed = true;
            const usage = usageCosting(r.fate === "settle" ? r.cost : 0n);
            const settlement = testSettlement(claim, usage, { ownerId: owner, tierBps: r.tierBps, planBps: r.planBps });
            const id = `req_${i}_${users[0]}`;
            const written = Promise.all([
              gw.batcher.settle(claim.userId, "gpt-4o-mini", id, settlement),
              ...(r.retrySettle ? [gw.batcher.settle(claim.userId, "gpt-4o-mini", id, settlement)] : []),
            ]);
            gw.leases.finish(claim, settlement.chargeMicros, written);
            const settles = await written;
            const done = settles.filter((s) => s.outcome === "settled");
            expect(done).toHaveLength(1); // exactly one of the racing settles wins
            expect(done[0]).toMatchObject({ chargedMicros: settlement.chargeMicros }); // in full, even beyond the claim
            outcomes[i]!.charged = settlement.chargeMicros;
            outcomes[i]!.earned = settlement.ownerEarningMicros;
          }),
        );
      }
      for (const g of gateways) await g.leases.close();
      const report = await ledger.audit();
      expect(report.problems).toEqual([]);
      expect(report.journalSumMicros).toBe(0n);
      expect(report.chargesChecked).toBeGreaterThanOrEqual(outcomes.filter((o) => o.claimed).length); // every charge recomputed
      // Nothing in flight: nothing is held, and each wallet is its funding minus its charges (below zero only
      // by what requests used beyond their holds).
      const wallets = await pool.query<{ user_id: string; available_micros: string; reserved_micros: string }>(
        "SELECT user_id, available_micros, reserved_micros FROM wallets WHERE user_id = ANY($1)",
        [users],
      );
      for (const w of wallets.rows) {
        const idx = users.indexOf(w.user_id);
        const spent = requests.reduce((sum, r, i) => (r.user === idx ? sum + outcomes[i]!.charged : sum), 0n);
        expect(BigInt(w.reserved_micros)).toBe(0n);
        expect(BigInt(w.available_micros)).toBe(funding[idx]! - spent);
      }
      const earned = outcomes.reduce((s, o) => s + o.earned, 0n);
      const ownerBalance = await pool.query<{ s: string }>("SELECT COALESCE(SUM(amount_micros), 0)::text AS s FROM journal_entries WHERE account = $1", [
        `owner:${owner}`,
      ]);
      expect(BigInt(ownerBalance.rows[0]!.s)).toBe(earned);
      expect(outcomes.some((o) => !o.claimed)).toBe(true); // the generated load does hit empty wallets
      const beyond = requests.some((r, i) => outcomes[i]!.claimed && r.fate === "settle" && outcomes[i]!.charged > r.reserve);
      expect(beyond).toBe(true); // and uses more than it held
      const flags = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM risk_flags WHERE kind = 'usage_over_reservation' AND subject = ANY($1)", [
        users.map((u) => `user:${u}`),
      ]);
      expect(flags.rows[0]!.n).toBeGreaterThan(0);
    }
  }, 180_000);

  it("usage beyond the hold is charged in full, the owner paid in full, and a wallet taken below zero stops new requests", async () => {
    const user = newId("usr");
    const owner = newId("usr");
    await ledger.credit(user, 10_000n, "grant", `grant:${user}`);
    const gw = gateway(newId("gw"));
    const claim = (await gw.leases.claim(user, 1_000n))!;
    // The provider reports 20,000 µ$ worth of output for a request that held 1,000.
    const settlement = testSettlement(claim, usageCosting(20_000n), { ownerId: owner, tierBps: 9_000 });
    expect(settlement.chargeMicros).toBeGreaterThanOrEqual(20_000n);
    const written = gw.batcher.settle(user, "gpt-4o-mini", `req_over_${user}`, settlement);
    gw.leases.finish(claim, settlement.chargeMicros, written);
    expect(await written).toMatchObject({ outcome: "settled", chargedMicros: settlement.chargeMicros, releasedMicros: 0n });
    await gw.leases.close();
    const w = await pool.query<{ available_micros: string; reserved_micros: string }>(
      "SELECT available_micros, reserved_micros FROM wallets WHERE user_id = $1",
      [user],
    );
    expect(w.rows[0]).toEqual({ available_micros: String(10_000n - settlement.chargeMicros), reserved_micros: "0" });
    const row = await pool.query<{ earning_micros: string; overdraft_micros: string }>(
      "SELECT earning_micros, overdraft_micros FROM reservations WHERE request_id = $1",
      [`req_over_${user}`],
    );
    // The lease held half the balance (5,000): the claim's 1,000 came from it, the rest from the other 5,000
    // available, and what that did not cover is the overdraft.
    expect(row.rows[0]).toEqual({ earning_micros: String(settlement.ownerEarningMicros), overdraft_micros: String(settlement.chargeMicros - 1_000n - 5_000n) });
    const flags = await pool.query<{ kind: string }>("SELECT kind FROM risk_flags WHERE subject = $1 AND status = 'open' ORDER BY kind", [`user:${user}`]);
    expect(flags.rows.map((f) => f.kind)).toEqual(["balance_overdrawn", "usage_over_reservation"]);
    // Below zero, nothing more is granted.
    const next = gateway(newId("gw"));
    expect(await next.leases.claim(user, 1n)).toBeNull();
    await next.leases.close();
    expect((await ledger.audit()).problems).toEqual([]);
  });

  it("the audit finds a charge capped below its usage, an owner paid below the tier, and a settlement never written", async () => {
    const user = newId("usr");
    const owner = newId("usr");
    await ledger.credit(user, 1_000_000n, "grant", `grant:${user}`);
    const gw = gateway(newId("gw"));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const claim = (await gw.leases.claim(user, 5_000n))!;
      const s = testSettlement(claim, usageCosting(2_000n), { ownerId: owner });
      const id = `req_audit_${i}_${user}`;
      ids.push(id);
      const written = gw.batcher.settle(user, "gpt-4o-mini", id, s);
      gw.leases.finish(claim, s.chargeMicros, written);
      await written;
    }
    // A fourth request is claimed and never settled (its gateway lost the settlement).
    await gw.leases.claim(user, 5_000n);
    expect((await ledger.audit()).problems).toEqual([]);
    // Tamper with the books as a bug (or an operator) could: each is found and named.
    await pool.query("UPDATE reservations SET charge_micros = charge_micros - 1 WHERE request_id = $1", [ids[0]]);
    await pool.query("UPDATE reservations SET earning_micros = earning_micros - 1 WHERE request_id = $1", [ids[1]]);
    await pool.query("UPDATE credit_leases SET released = true, requests_claimed = 4 WHERE user_id = $1", [user]);
    const problems = (await ledger.audit()).problems.join("\n");
    expect(problems).toContain(`request ${ids[0]}: charged`);
    expect(problems).toContain(`request ${ids[1]}: owner earned`);
    expect(problems).toMatch(/4 requests were claimed against it, 3 settled — 1 settlements were never written/);
    // Put the books back for the other tests.
    await pool.query("UPDATE reservations SET charge_micros = charge_micros + 1 WHERE request_id = $1", [ids[0]]);
    await pool.query("UPDATE reservations SET earning_micros = earning_micros + 1 WHERE request_id = $1", [ids[1]]);
    await pool.query("UPDATE credit_leases SET requests_claimed = 3 WHERE user_id = $1", [user]);
    await pool.query("UPDATE credit_leases SET released = false WHERE user_id = $1", [user]);
    await gw.leases.close();
  });

  it("settling a request twice, or against an unknown lease, changes nothing", async () => {
    const user = newId("usr");
    await ledger.credit(user, 5_000n, "grant", `grant:${user}`);
    const unknown = testSettlement({ leaseId: "lse_unknown", userId: user, amountMicros: 10n }, usageCosting(1n));
    expect(await ledger.settle("req_never_claimed", unknown)).toEqual({ outcome: "unknown_request" });
    const gw = gateway(newId("gw"));
    const claim = (await gw.leases.claim(user, 3_000n))!;
    const s = testSettlement(claim, usageCosting(100n));
    expect(await ledger.settle(`req_once_${user}`, s)).toMatchObject({ outcome: "settled", chargedMicros: s.chargeMicros });
    expect(await ledger.settle(`req_once_${user}`, s)).toMatchObject({ outcome: "already_settled" });
    gw.leases.finish(claim, s.chargeMicros, Promise.resolve());
    await gw.leases.close();
    expect((await ledger.audit()).problems).toEqual([]);
  });
});

describe("pricing", () => {
  it("integer costs: the user rounds up, the owner rounds down, margin takes the rest", () => {
    const price = { inputMicrosPerMTok: 150_000n, outputMicrosPerMTok: 600_000n, cachedInputMicrosPerMTok: 75_000n }; // $0.15 / $0.60 / $0.075 per 1M
    const official = officialCostMicros({ inputTokens: 1_000, outputTokens: 500, cachedInputTokens: 200 }, price);
    // 800 × 0.15 + 200 × 0.075 + 500 × 0.60 = 120 + 15 + 300 = 435 micro-USD
    expect(official).toBe(435n);
    expect(ownerEarningMicros(official, TIER_BPS.S)).toBe(391n); // 391.5 rounded down
    expect(ownerEarningMicros(official, TIER_BPS.A)).toBe(304n); // 304.5 rounded down
    expect(userChargeMicros(official, 12_000n)).toBe(522n); // premium plan ×1.2
    fc.assert(
      fc.property(
        fc.nat({ max: 10_000_000 }),
        fc.nat({ max: 1_000_000 }),
        fc.bigInt({ min: 0n, max: 100_000_000n }),
        fc.bigInt({ min: 1n, max: 20_000n }),
        (inTok, outTok, p, plan) => {
          const cost = officialCostMicros(
            { inputTokens: inTok, outputTokens: outTok, cachedInputTokens: 0 },
            { inputMicrosPerMTok: p, outputMicrosPerMTok: p, cachedInputMicrosPerMTok: p },
          );
          expect(cost * 1_000_000n >= BigInt(inTok + outTok) * p).toBe(true);
          expect((cost - 1n) * 1_000_000n < BigInt(inTok + outTok) * p || cost === 0n).toBe(true);
          const earning = ownerEarningMicros(cost, TIER_BPS.S);
          expect(earning <= cost).toBe(true);
          expect(userChargeMicros(cost, plan) * 10_000n >= cost * plan).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("batched settlements from several gateways at once: each request charged once, no deadlock lost, books balanced", async () => {
    const users = Array.from({ length: 6 }, () => newId("usr"));
    for (const u of users) await ledger.credit(u, 10_000_000n, "grant", `grant:batch:${u}`);
    const owner = newId("usr");
    const holder = gateway(newId("gw"));
    const ids = await Promise.all(
      Array.from({ length: 600 }, async (_, i) => {
        const user = users[i % users.length]!;
        const claim = (await holder.leases.claim(user, 1_000n))!;
        return {
          id: `req_batch_${i}_${users[0]}`,
          user,
          model: ["m1", "m2", "m3"][i % 3]!,
          settlement: testSettlement(claim, usageCosting(BigInt(100 + (i % 7) * 50)), { ownerId: owner }),
        };
      }),
    );
    // Three "gateways", each with its own batcher and pool, settle overlapping subsets concurrently (so every
    // request is settled two or three times); batches interleave users and models in every order.
    const pools = [0, 1, 2].map(() => new pg.Pool({ connectionString: database.url, max: 4 }));
    const batchers = pools.map((p) => new SettlementBatcher(new Ledger(p), log, new LedgerHealth(log)));
    const settled = await Promise.all(
      ids.flatMap((r, i) => batchers.filter((_, g) => g !== i % 3 || i % 2 === 0).map((b) => b.settle(r.user, r.model, r.id, r.settlement))),
    );
    await Promise.all(batchers.map((b) => b.drain()));
    await Promise.all(pools.map((p) => p.end()));
    const charged = settled.filter((x) => x.outcome === "settled");
    expect(charged).toHaveLength(ids.length);
    expect(settled.filter((x) => x.outcome !== "settled" && x.outcome !== "already_settled")).toEqual([]);
    const journal = await pool.query<{ n: string }>("SELECT COUNT(*)::text AS n FROM journal_entries WHERE kind = 'usage' AND request_id LIKE 'req_batch_%'");
    expect(Number(journal.rows[0]!.n)).toBe(ids.length);
    const report = await ledger.audit();
    expect(report.problems).toEqual([]);
  }, 60_000);
});
