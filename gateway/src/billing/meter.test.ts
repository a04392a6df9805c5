/**
 * The meter's hand-over of a batch to its deferred settlement: the hold is the batch's worst case at batch prices,
 * and the pricing the row keeps is the table's (unscaled), so the settlement — which applies the row's share
 * itself — charges the worst case exactly what was held, on a plan with its own price for the model too.
 */
import { describe, expect, it } from "vitest";
import { emptyFields } from "@wellspring/protocol";
import { createLogger } from "../log.ts";
import { deferredCharge, priceToJson, type DeferredHold } from "./deferred.ts";
import { Meter, type HoldRequest, type MeterOptions } from "./meter.ts";
import { BATCH_PRICE_BPS, type ModelPriceMicros, type PlanView } from "./prices.ts";

const log = createLogger({}, "error", () => {});
const official: ModelPriceMicros = { inputMicrosPerMTok: 150_000n, outputMicrosPerMTok: 600_000n, cachedInputMicrosPerMTok: 75_000n };
const own: ModelPriceMicros = { inputMicrosPerMTok: 3_000_001n, outputMicrosPerMTok: 4_000_003n, cachedInputMicrosPerMTok: 0n };

function meterWith(plan: PlanView): Meter {
  const options = {
    settlements: {},
    leases: { claim: (userId: string, amountMicros: bigint) => Promise.resolve({ leaseId: "lse_t", userId, amountMicros }), finish: () => {} },
    prices: { get: () => Promise.resolve({ ver: 7, price: official }) },
    tariffs: { plan: () => Promise.resolve(plan), tierBps: () => Promise.resolve(7_000n) },
    defaultMaxOutputTokens: 1_000,
  } as unknown as MeterOptions;
  return new Meter(options, log);
}

const worst = { inputTokens: 1_000_000, outputTokens: 250_000, cachedInputTokens: 0 };
const request: HoldRequest = {
  requestId: "req_t",
  userId: "usr_t",
  planId: null,
  route: { api: "openai", unit: "tokens", multipart: false },
  model: "gpt-4o-mini",
  fields: emptyFields(),
  agent: { agentId: "agt_t", ownerId: "usr_owner", tier: "A" },
  inputBytes: 100,
  batch: { worst: () => worst, priceBps: BATCH_PRICE_BPS },
};

describe("a batch handed over to its deferred settlement", () => {
  for (const [name, plan] of [
    ["a plan with a multiplier", { id: "plan_m", name: "m", kind: "standard", multiplierBps: 12_000n, overrides: new Map() }],
    [
      "a plan with its own price for the model",
      { id: "plan_o", name: "o", kind: "custom", multiplierBps: 10_000n, overrides: new Map([["openai:gpt-4o-mini", own]]) },
    ],
  ] as [string, PlanView][]) {
    it(`on ${name}: the row keeps the table's prices, and its worst case settles at exactly the hold`, async () => {
      const hold = await meterWith(plan).open(request);
      let handed: DeferredHold | null = null;
      expect(
        await hold.handOver("agt_t", (h) => {
          handed = h;
          return Promise.resolve();
        }),
      ).toBe(true);
      const h = handed as unknown as DeferredHold;
      expect(h.priceBps).toBe(BATCH_PRICE_BPS);
      expect(h.pricing.official).toEqual(priceToJson(official));
      expect(h.pricing.planOwnPrice).toEqual(plan.overrides.size > 0 ? priceToJson(own) : null);
      const atWorst = deferredCharge(h.pricing, request.model, worst, true, BATCH_PRICE_BPS);
      expect(atWorst.chargeMicros).toBe(hold.heldMicros);
      expect(hold.heldMicros).toBeGreaterThan(0n);
    });
  }
});
