/**
 * Canaries are paid for by the platform: a canary (risk/canary.ts) runs on the owner's provider key, so the owner
 * earns for it what a user's request with the same usage would earn — the official price of the tokens the
 * provider reported × the agent's tier share — moved from `platform:margin` (the platform's own money) to
 * `owner:<id>` in one balanced journal transaction (`kind` = `canary`, `tx_id` = `canary:<canary id>`: posted once
 * however often it is retried). No user is charged. A canary that failed its checks is not paid (its answer was
 * not the claimed model's), nor one whose usage the provider did not report, nor a model without an official price.
 */
import type pg from "pg";
import type { ApiFamily } from "@wellspring/protocol";
import { ACCOUNT_MARGIN, inTransaction, ownerAccount, postTransfer } from "./ledger.ts";
import { officialCostMicros, ownerEarningMicros, type PriceBook, type Tariffs, type Tier } from "./prices.ts";

/** The journal kind of a canary payment. */
export const CANARY_JOURNAL_KIND = "canary";

export interface CanaryUsage {
  canaryId: string;
  ownerId: string;
  /** The tier the agent is settled at now (its discount lane's when it is in it). */
  tier: Tier;
  api: ApiFamily;
  model: string;
  inputTokens: number;
  outputTokens: number;
}

export class CanaryPayments {
  constructor(
    private readonly pool: pg.Pool,
    private readonly prices: PriceBook,
    private readonly tariffs: Tariffs,
  ) {}

  /** Pays the owner for one canary; the amount paid (0 when nothing is due), or null for a model without a price. */
  async pay(u: CanaryUsage): Promise<bigint | null> {
    const priced = await this.prices.get(u.api, u.model);
    if (!priced) return null;
    const official = officialCostMicros({ inputTokens: u.inputTokens, outputTokens: u.outputTokens, cachedInputTokens: 0 }, priced.price);
    const earning = ownerEarningMicros(official, await this.tariffs.tierBps(u.tier));
    if (earning <= 0n) return 0n;
    await inTransaction(this.pool, (c) => postTransfer(c, `canary:${u.canaryId}`, ACCOUNT_MARGIN, ownerAccount(u.ownerId), earning, CANARY_JOURNAL_KIND));
    return earning;
  }
}
