/**
 * Settlements as the proxy makes them, for ledger and lease tests: priced from a usage at the seeded public
 * price table, so the audit's recomputation of every charge (from the recorded usage and the price version)
 * holds for them exactly as it must for real traffic.
 */
import { DEFAULT_PRICE_TABLE } from "@wellspring/db/core";
import type { LeaseClaim } from "../leases.ts";
import type { ReserveMeta, Settlement } from "../ledger.ts";
import { officialCostMicros, ownerEarningMicros, userChargeMicros } from "../prices.ts";
import type { Usage } from "../usage.ts";
import { recordRowJson } from "../../api/records.ts";

export const TEST_MODEL = "gpt-4o-mini";
const PRICE = DEFAULT_PRICE_TABLE.find((p) => p.provider === "openai" && p.model === TEST_MODEL)!;

export function testMeta(opts: { ownerId?: string | null; tier?: "S" | "A" | "discount"; tierBps?: number } = {}): ReserveMeta {
  return {
    priceVer: 1,
    planId: "plan_standard",
    api: "openai",
    model: TEST_MODEL,
    agentId: null,
    ownerId: opts.ownerId ?? null,
    tier: opts.ownerId ? (opts.tier ?? "A") : null,
    tierBps: opts.ownerId ? (opts.tierBps ?? 7_000) : null,
  };
}

/** The official cost of `usage` of the test model at price version 1. */
export function testOfficialMicros(usage: Usage): bigint {
  return officialCostMicros(usage, PRICE);
}

/** Output tokens whose official cost is at least `micros` (input 0) — to charge a chosen amount. */
export function usageCosting(micros: bigint): Usage {
  const outputTokens = Number((micros * 1_000_000n + PRICE.outputMicrosPerMTok - 1n) / PRICE.outputMicrosPerMTok);
  return { inputTokens: 0, outputTokens, cachedInputTokens: 0 };
}

/** A settlement for `usage` held against `claim`, charged at `planBps` (10,000 = the official price). */
export function testSettlement(
  claim: LeaseClaim,
  usage: Usage,
  opts: { ownerId?: string | null; tierBps?: number; planBps?: number; reservedMicros?: bigint; endCause?: string } = {},
): Settlement {
  const meta = testMeta({ ownerId: opts.ownerId ?? null, tierBps: opts.tierBps });
  const official = testOfficialMicros(usage);
  const planBps = opts.planBps ?? 10_000;
  return {
    chargeMicros: userChargeMicros(official, BigInt(planBps)),
    ownerId: meta.ownerId,
    ownerEarningMicros: meta.ownerId && meta.tierBps !== null ? ownerEarningMicros(official, BigInt(meta.tierBps)) : 0n,
    officialMicros: official,
    planBps,
    usage,
    estimated: false,
    endCause: opts.endCause ?? "completed",
    lease: { leaseId: claim.leaseId, userId: claim.userId, reservedMicros: opts.reservedMicros ?? claim.amountMicros, meta },
  };
}

/** A small call's request record as the proxy writes it (`recordRowJson`), for settlements that carry one. */
export function testRecordJson(id: string, userId: string, keyId: string, chargeMicros: bigint): string {
  return recordRowJson({
    id,
    userId,
    keyId,
    agentId: null,
    gatewayId: "gw_test",
    route: "/v1/chat/completions",
    provider: "openai",
    model: TEST_MODEL,
    streamed: false,
    httpStatus: 200,
    endCause: "completed",
    bytesIn: 120,
    bytesOut: 300,
    startedAt: new Date(),
    firstByteMs: 3,
    durationMs: 5,
    inputTokens: 12,
    outputTokens: 40,
    cachedInputTokens: 0,
    usageEstimated: false,
    priceVer: 1,
    tier: null,
    tierBps: null,
    userChargeMicros: chargeMicros,
    ownerEarningMicros: 0n,
  });
}
