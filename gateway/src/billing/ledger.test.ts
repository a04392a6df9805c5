/**
 * The ledger against a real PostgreSQL: random interleavings of 1,000 requests (concurrent, aborted, failing,
 * retried with the same id) leave the journal balanced, no wallet negative, every charge within its
 * reservation and each request charged at most once; concurrent reservations never overspend.
 */
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { Ledger } from "./ledger.ts";
import { SettlementBatcher } from "./settlement_batcher.ts";
import { createLogger } from "../log.ts";
import { formatMicros, officialCostMicros, ownerEarningMicros, TIER_BPS, userChargeMicros } from "./pricing.ts";

let database: TestDatabase;
let pool: pg.Pool;
let ledger: Ledger;
beforeAll(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 8 });
  pool.on("error", () => {}); // idle clients are terminated when the test database is dropped
  ledger = new Ledger(pool);
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

const request = fc.record({
  user: fc.nat({ max: 19 }),
  reserve: fc.bigInt({ min: 0n, max: 5_000n }),
  charge: fc.bigInt({ min: 0n, max: 6_000n }),
  earningBps: fc.constantFrom(TIER_BPS.S, TIER_BPS.A, 5_000n),
  fate: fc.constantFrom("settle", "settle", "release", "abort_before_reserve", "upstream_error"),
  retryReserve: fc.boolean(),
  retrySettle: fc.boolean(),
});

describe("ledger", () => {
  it("random interleavings of 1,000 requests keep every invariant", async () => {
    const runs = fc.sample(fc.tuple(fc.array(fc.bigInt({ min: 0n, max: 200_000n }), { minLength: 20, maxLength: 20 }), fc.array(request, { minLength: 1000, maxLength: 1000 }), fc.array(fc.nat(), { minLength: 1000, maxLength: 1000 })), { numRuns: 2, seed: 1129 });
    for (const [funding, requests, order] of runs) {
      const users = funding.map(() => newId("usr"));
      await Promise.all(users.map(async (u, i) => {
        if (funding[i]! > 0n) {
          const txId = `grant:${u}`;
          expect(await ledger.credit(u, funding[i]!, "grant", txId)).toBe("credited");
          expect(await ledger.credit(u, funding[i]!, "grant", txId)).toBe("duplicate"); // retried grant
        }
      }));
      const owner = newId("usr");
      const outcomes: { reserved: bigint; charged: bigint; results: string[] }[] = requests.map(() => ({ reserved: 0n, charged: 0n, results: [] }));
      // Run in a shuffled order, 50 at a time concurrently; each request's steps race their own retries.
      const sequence = requests.map((_, i) => i).sort((a, b) => order[a]! - order[b]! || a - b);
      for (let b = 0; b < sequence.length; b += 50) {
        await Promise.all(sequence.slice(b, b + 50).map(async (i) => {
          const r = requests[i]!;
          const id = `req_${i}_${users[0]}`;
          const user = users[r.user]!;
          if (r.fate === "abort_before_reserve") return;
          const attempts = await Promise.all([ledger.reserve(id, user, r.reserve), ...(r.retryReserve ? [ledger.reserve(id, user, r.reserve)] : [])]);
          outcomes[i]!.results.push(...attempts);
          if (!attempts.includes("reserved")) return;
          outcomes[i]!.reserved = r.reserve;
          const charge = r.fate === "settle" ? r.charge : 0n; // a release or an upstream error charges nothing
          const settlement = { chargeMicros: charge, ownerId: owner, ownerEarningMicros: (charge * r.earningBps) / 10_000n };
          const settles = await Promise.all([ledger.settle(id, settlement), ...(r.retrySettle ? [ledger.settle(id, settlement)] : [])]);
          const done = settles.filter((s) => s.outcome === "settled");
          expect(done).toHaveLength(1); // exactly one of the racing settles wins
          outcomes[i]!.charged = done[0]!.outcome === "settled" ? done[0]!.chargedMicros : 0n;
        }));
      }
      for (const o of outcomes) {
        expect(o.results.filter((x) => x === "reserved").length).toBeLessThanOrEqual(1);
        expect(o.charged <= o.reserved).toBe(true);
      }
      const report = await ledger.audit();
      expect(report.problems).toEqual([]);
      expect(report.journalSumMicros).toBe(0n);
      // Nothing in flight: every reservation is back to zero, and each wallet is its funding minus its charges.
      const wallets = await pool.query<{ user_id: string; available_micros: string; reserved_micros: string }>("SELECT user_id, available_micros, reserved_micros FROM wallets WHERE user_id = ANY($1)", [users]);
      for (const w of wallets.rows) {
        const idx = users.indexOf(w.user_id);
        const spent = requests.reduce((sum, r, i) => (r.user === idx ? sum + outcomes[i]!.charged : sum), 0n);
        expect(BigInt(w.reserved_micros)).toBe(0n);
        expect(BigInt(w.available_micros)).toBe(funding[idx]! - spent);
      }
      const someInsufficient = outcomes.some((o) => o.results.includes("insufficient_balance"));
      expect(someInsufficient).toBe(true); // the generated load does hit empty wallets
    }
  }, 120_000);

  it("64 concurrent reservations on a wallet that covers 10 never overspend", async () => {
    const user = newId("usr");
    await ledger.credit(user, 10_000n, "grant", `grant:${user}`);
    const results = await Promise.all(Array.from({ length: 64 }, (_, i) => ledger.reserve(`req_c${i}_${user}`, user, 1_000n)));
    expect(results.filter((r) => r === "reserved")).toHaveLength(10);
    expect(results.filter((r) => r === "insufficient_balance")).toHaveLength(54);
    const w = await pool.query<{ available_micros: string; reserved_micros: string }>("SELECT available_micros, reserved_micros FROM wallets WHERE user_id = $1", [user]);
    expect(w.rows[0]).toEqual({ available_micros: "0", reserved_micros: "10000" });
  });

  it("settling an unknown request or a request twice changes nothing", async () => {
    const user = newId("usr");
    await ledger.credit(user, 5_000n, "grant", `grant:${user}`);
    expect(await ledger.settle("req_never_reserved", { chargeMicros: 1n, ownerId: null, ownerEarningMicros: 0n })).toEqual({ outcome: "unknown_request" });
    await ledger.reserve(`req_once_${user}`, user, 3_000n);
    expect(await ledger.settle(`req_once_${user}`, { chargeMicros: 9_999n, ownerId: null, ownerEarningMicros: 0n })).toEqual({ outcome: "settled", chargedMicros: 3_000n, releasedMicros: 0n });
    expect(await ledger.settle(`req_once_${user}`, { chargeMicros: 1n, ownerId: null, ownerEarningMicros: 0n })).toEqual({ outcome: "already_settled" });
    expect((await ledger.audit()).ok).toBe(true);
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
    expect(formatMicros(official)).toBe("$0.000435");
    fc.assert(fc.property(fc.nat({ max: 10_000_000 }), fc.nat({ max: 1_000_000 }), fc.bigInt({ min: 0n, max: 100_000_000n }), fc.bigInt({ min: 1n, max: 20_000n }), (inTok, outTok, p, plan) => {
      const cost = officialCostMicros({ inputTokens: inTok, outputTokens: outTok, cachedInputTokens: 0 }, { inputMicrosPerMTok: p, outputMicrosPerMTok: p, cachedInputMicrosPerMTok: p });
      expect(cost * 1_000_000n >= BigInt(inTok + outTok) * p).toBe(true);
      expect((cost - 1n) * 1_000_000n < BigInt(inTok + outTok) * p || cost === 0n).toBe(true);
      const earning = ownerEarningMicros(cost, TIER_BPS.S);
      expect(earning <= cost).toBe(true);
      expect(userChargeMicros(cost, plan) * 10_000n >= cost * plan).toBe(true);
    }), { numRuns: 2000 });
  });

  it("batched settlements from several gateways at once: each request charged once, no deadlock lost, books balanced", async () => {
    const users = Array.from({ length: 6 }, () => newId("usr"));
    for (const u of users) await ledger.credit(u, 10_000_000n, "grant", `grant:batch:${u}`);
    const owner = newId("usr");
    const ids = Array.from({ length: 600 }, (_, i) => ({ id: `req_batch_${i}_${users[0]}`, user: users[i % users.length]!, model: ["m1", "m2", "m3"][i % 3]!, charge: BigInt(100 + (i % 7) * 50) }));
    for (const r of ids) expect(await ledger.reserve(r.id, r.user, 1_000n, { priceVer: 1, planId: "plan_standard", api: "openai", model: r.model, agentId: null, ownerId: owner, tier: "A", tierBps: 7_000 })).toBe("reserved");
    // Three "gateways", each with its own batcher and pool, settle overlapping subsets concurrently (so every
    // request is settled two or three times); batches interleave users and models in every order.
    const log = createLogger({ proc: "test" }, "error");
    const pools = [0, 1, 2].map(() => new pg.Pool({ connectionString: database.url, max: 4 }));
    const batchers = pools.map((p) => new SettlementBatcher(new Ledger(p), log));
    const settled = await Promise.all(ids.flatMap((r, i) =>
      batchers.filter((_, g) => g !== i % 3 || i % 2 === 0).map((b) =>
        b.settle(r.user, r.model, r.id, { chargeMicros: r.charge, ownerId: owner, ownerEarningMicros: (r.charge * 7n) / 10n }))));
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
