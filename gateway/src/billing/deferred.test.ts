/**
 * Deferred settlements against a real PostgreSQL: a background response's hold moves out of a gateway's lease
 * into a held reservation (from the available balance when the lease is gone), the books stay whole at every step
 * (the audit), a second hand-over of the same request moves nothing, and a row whose agent is gone is settled at
 * nothing by any gateway — once. Plus the pure parts: the charge at the request's own pricing and the usage cap.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, seedPriceTableIfEmpty } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { createLogger } from "../log.ts";
import { issueKey } from "../ops/keys.ts";
import { RecordWriter, type RequestRecordInput } from "../api/records.ts";
import { cappedUsage, deferredCharge, priceToJson, type DeferredHold, type DeferredPricing } from "./deferred.ts";
import { DeferredSettlements } from "../api/deferred.ts";
import type { BudgetTaken } from "../limits/limiter.ts";
import { LedgerHealth } from "./health.ts";
import { CreditLeases, type LeaseOptions } from "./leases.ts";
import { Ledger } from "./ledger.ts";
import { BATCH_PRICE_BPS, officialCostMicros, ownerEarningMicros, scaledPrice, userChargeMicros } from "./prices.ts";

let database: TestDatabase;
let pool: pg.Pool;
let ledger: Ledger;
const log = createLogger({ proc: "test" }, "error");
beforeAll(async () => {
  database = await createTestDatabase();
  await seedPriceTableIfEmpty(database.db);
  pool = new pg.Pool({ connectionString: database.url, max: 4 });
  pool.on("error", () => {});
  ledger = new Ledger(pool);
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

const options: LeaseOptions = { sliceMicros: 200_000n, idleReleaseMs: 60_000, renewIntervalMs: 60_000, validForMs: 120_000, gatewayDeadAfterMs: 240_000 };
const official = { inputMicrosPerMTok: 150_000n, outputMicrosPerMTok: 600_000n, cachedInputMicrosPerMTok: 75_000n };
const pricing: DeferredPricing = {
  priceVer: 1,
  planId: "plan_standard",
  planMultiplierBps: "12000",
  planOwnPrice: null,
  official: priceToJson(official),
  tier: "A",
  tierBps: 7_000,
  api: "openai",
};

function record(id: string, userId: string, keyId: string): RequestRecordInput {
  return {
    id,
    userId,
    keyId,
    agentId: null,
    gatewayId: "gw_a",
    route: "/v1/responses",
    provider: "openai",
    model: "gpt-4o-mini",
    streamed: false,
    httpStatus: 200,
    endCause: "completed",
    bytesIn: 100,
    bytesOut: 300,
    startedAt: new Date(),
    firstByteMs: 5,
    durationMs: 6,
    inputTokens: null,
    outputTokens: null,
    cachedInputTokens: null,
    usageEstimated: false,
    priceVer: null,
    tier: null,
    tierBps: null,
    userChargeMicros: null,
    ownerEarningMicros: null,
  };
}

const walletOf = async (userId: string) =>
  (await pool.query<{ a: string; r: string }>("SELECT available_micros::text AS a, reserved_micros::text AS r FROM wallets WHERE user_id = $1", [userId]))
    .rows[0]!;

describe("deferred settlements", () => {
  it("the hold leaves the lease for a reservation of its own; a row whose agent is gone settles at nothing, once", async () => {
    const userId = newId("usr");
    await database.db.user.create({ data: { id: userId, email: `${userId}@t.test` } });
    await ledger.credit(userId, 1_000_000n, "grant", `grant:${userId}`);
    const key = await issueKey(database.db, userId, "background");
    const leases = new CreditLeases(new Ledger(pool), "gw_a", "hub_test", new LedgerHealth(log), log, options);
    const records = new RecordWriter(pool, log);
    // No agent connected here, and the row's agent does not exist: only the rule can end it.
    const refunds: [BudgetTaken, number][] = [];
    const deferred = new DeferredSettlements({
      pool,
      log,
      localAgent: () => undefined,
      localAgentIds: () => [],
      records,
      sealer: null,
      refundBudget: (taken, amount) => refunds.push([taken, amount]),
    });
    const budget: BudgetTaken = { pool: "limits:{k:key_x}:budget:2026-12:1000000", capacityMicros: 1_000_000, takenMicros: 50_000 };
    try {
      const claim = (await leases.claim(userId, 50_000n))!;
      const requestId = newId("req");
      const hold: DeferredHold = {
        requestId,
        userId,
        agentId: "agt_gone",
        ownerId: "usr_owner",
        model: "gpt-4o-mini",
        leaseId: claim.leaseId,
        reservedMicros: 50_000n,
        pricing,
        worst: { inputTokens: 1_000, outputTokens: 2_000 },
      };
      await deferred.defer(hold, "resp_abc", record(requestId, userId, key.id), "response", null, budget);
      leases.finish(claim, 50_000n, Promise.resolve());
      const lease = await pool.query<{ amount: string; charged: string }>(
        "SELECT amount_micros::text AS amount, charged_micros::text AS charged FROM credit_leases WHERE id = $1",
        [claim.leaseId],
      );
      const slice = BigInt(lease.rows[0]!.amount) + 50_000n; // what the lease was granted
      expect(lease.rows[0]!.charged).toBe("50000");
      const wallet = (available: bigint) => ({ a: String(available), r: String(1_000_000n - available) });
      // The wallet's reserved total is unchanged: the lease's slice, now part lease, part held reservation.
      expect(await walletOf(userId)).toEqual(wallet(1_000_000n - slice));
      expect((await pool.query("SELECT status::text FROM reservations WHERE request_id = $1", [requestId])).rows[0]).toEqual({ status: "held" });
      expect((await ledger.audit()).problems).toEqual([]);
      // Handed over again (a retry): nothing moves.
      await deferred.defer(hold, "resp_abc", record(requestId, userId, key.id));
      expect(await walletOf(userId)).toEqual(wallet(1_000_000n - slice));

      expect(await deferred.tick()).toBe(1);
      expect(await deferred.tick()).toBe(0);
      // Settled at nothing: the key's budget pool gets the whole take back, once.
      expect(refunds).toEqual([[budget, 50_000]]);
      const row = await pool.query("SELECT state::text, settled_by, charge_micros::text FROM deferred_settlements WHERE request_id = $1", [requestId]);
      expect(row.rows[0]).toEqual({ state: "settled", settled_by: "agent_retired", charge_micros: "0" });
      expect(await walletOf(userId)).toEqual(wallet(1_000_000n - slice + 50_000n));
      expect((await pool.query("SELECT 1 FROM journal_entries WHERE request_id = $1", [requestId])).rowCount).toBe(0);
      await records.flush();
      const rec = await pool.query("SELECT user_charge_micros::text, end_cause::text FROM request_records WHERE id = $1", [requestId]);
      expect(rec.rows[0]).toEqual({ user_charge_micros: "0", end_cause: "upstream_error" });
      expect((await ledger.audit()).problems).toEqual([]);
    } finally {
      await deferred.close();
      await leases.close();
      records.close();
    }
    expect(await walletOf(userId)).toEqual({ a: "1000000", r: "0" });
    expect((await ledger.audit()).problems).toEqual([]);
  });

  it("a lease released before the hand-over: the hold comes from the available balance, as far as it goes", async () => {
    const userId = newId("usr");
    await database.db.user.create({ data: { id: userId, email: `${userId}@t.test` } });
    await ledger.credit(userId, 30_000n, "grant", `grant:${userId}`);
    const leaseId = newId("lse");
    expect(await ledger.lease(leaseId, userId, "gw_b", 10_000n, 10_000n)).toBe(10_000n);
    await ledger.releaseLease(leaseId, 1);
    const held = await pool.query<{ held: string }>(
      "SELECT wellspring_defer_hold($1, $2, $3, $4, 1, 'plan_standard', 'openai', 'gpt-4o-mini', 'agt_x', NULL, 'A', 7000)::text AS held",
      [newId("req"), leaseId, userId, "50000"],
    );
    expect(held.rows[0]!.held).toBe("30000");
    expect(await walletOf(userId)).toEqual({ a: "0", r: "30000" });
    expect((await ledger.audit()).problems).toEqual([]);
  });

  it("charges by the pricing the request started with, and caps a report beyond the worst case held", () => {
    const usage = { inputTokens: 1_000, outputTokens: 500, cachedInputTokens: 0 };
    const cost = officialCostMicros(usage, official);
    expect(deferredCharge(pricing, "gpt-4o-mini", usage, true)).toEqual({
      chargeMicros: userChargeMicros(cost, 12_000n),
      officialMicros: cost,
      earningMicros: ownerEarningMicros(cost, 7_000n),
      planBps: 12_000,
    });
    expect(deferredCharge(pricing, "gpt-4o-mini", usage, false).earningMicros).toBe(0n);
    const own = { ...pricing, planOwnPrice: priceToJson({ inputMicrosPerMTok: 1_000_000n, outputMicrosPerMTok: 0n, cachedInputMicrosPerMTok: 0n }) };
    expect(deferredCharge(own, "gpt-4o-mini", usage, true)).toMatchObject({ chargeMicros: 1_000n, planBps: null });

    const worst = { inputTokens: 100, outputTokens: 50 };
    const within = { usage: { input_tokens: 80, output_tokens: 50, input_tokens_details: { cached_tokens: 10 } } };
    expect(cappedUsage(within, worst)).toEqual({ usage: { inputTokens: 80, outputTokens: 50, cachedInputTokens: 10 }, capped: false });
    const beyond = { usage: { input_tokens: 80, output_tokens: 5_000, input_tokens_details: { cached_tokens: 0 } } };
    expect(cappedUsage(beyond, worst)).toEqual({ usage: { inputTokens: 80, outputTokens: 50, cachedInputTokens: 0 }, capped: true });
    expect(cappedUsage({ status: "failed", usage: null }, worst)).toEqual({ usage: { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 }, capped: false });
  });

  it("charges a batch at the batch share of the price table, for the user and the owner's official share alike", () => {
    const usage = { inputTokens: 1_000_000, outputTokens: 1_000_000, cachedInputTokens: 0 };
    // 150,000 + 600,000 micros at the full table; 75,000 + 300,000 at half of it.
    const half = 375_000n;
    expect(deferredCharge(pricing, "gpt-4o-mini", usage, true, BATCH_PRICE_BPS)).toEqual({
      chargeMicros: userChargeMicros(half, 12_000n),
      officialMicros: half,
      earningMicros: ownerEarningMicros(half, 7_000n),
      planBps: 12_000,
    });
    expect(deferredCharge(pricing, "gpt-4o-mini", usage, true).officialMicros).toBe(750_000n);
    // A plan's own price is halved too; an odd price rounds up to the whole micro-unit.
    const own = { ...pricing, planOwnPrice: priceToJson({ inputMicrosPerMTok: 1_000_001n, outputMicrosPerMTok: 0n, cachedInputMicrosPerMTok: 0n }) };
    expect(deferredCharge(own, "gpt-4o-mini", { ...usage, outputTokens: 0 }, true, BATCH_PRICE_BPS).chargeMicros).toBe(500_001n);
    expect(scaledPrice({ inputMicrosPerMTok: 3n, outputMicrosPerMTok: 0n, cachedInputMicrosPerMTok: 1n }, BATCH_PRICE_BPS)).toMatchObject({
      inputMicrosPerMTok: 2n,
      cachedInputMicrosPerMTok: 1n,
    });
  });
});
