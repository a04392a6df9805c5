/**
 * Publishing the official price table and setting what users pay (plans) and owners earn (tier shares). Each
 * is one transaction with its audit event and the hub event every gateway applies at once (a new price
 * version is pushed to every connected agent).
 */
import { newId, publishHubEvent, publishPriceVersion, type Db, type PriceEntry } from "@wellspring/db/core";
import { recordAudit, type Actor } from "./audit.ts";
import type { AgentTier } from "./agents.ts";

/** Publishes the whole table as the next version; returns its number. */
export async function publishPrices(db: Db, actor: Actor, entries: readonly PriceEntry[], note?: string): Promise<number> {
  return publishPriceVersion(db, entries, note, (tx, ver) =>
    recordAudit(tx, actor, "prices.published", `price_ver:${ver}`, { models: entries.length, note: note ?? null }),
  );
}

/** Sets a tier's owner share, basis points of the official price (0–10,000). */
export async function setTierShare(db: Db, actor: Actor, tier: AgentTier, bps: number): Promise<void> {
  if (!Number.isInteger(bps) || bps < 0 || bps > 10_000) throw new RangeError("a tier share is 0 to 10,000 basis points");
  await db.$transaction(async (tx) => {
    await tx.tierCoefficient.upsert({ where: { tier }, create: { tier, bps }, update: { bps } });
    await recordAudit(tx, actor, "tier.set", `tier:${tier}`, { bps });
    await publishHubEvent(tx, { kind: "tariffs_changed" });
  });
}

export interface NewPlan {
  name: string;
  kind: "standard" | "promotional" | "premium";
  /** What users on it pay, bps of the official price (10,000 = the official price). */
  multiplierBps: number;
  /** The plan's own prices for some models, instead of official × multiplier. */
  overrides: readonly PriceEntry[];
}

/** Creates a plan; returns its id. */
export async function createPlan(db: Db, actor: Actor, plan: NewPlan): Promise<string> {
  const planId = newId("plan");
  await db.$transaction(async (tx) => {
    await tx.plan.create({ data: { id: planId, name: plan.name, kind: plan.kind, multiplierBps: plan.multiplierBps } });
    if (plan.overrides.length) {
      await tx.planModelPrice.createMany({
        data: plan.overrides.map((o) => ({
          planId,
          api: o.provider === "anthropic" ? "anthropic" : "openai",
          model: o.model,
          inputMicrosPerMTok: o.inputMicrosPerMTok,
          outputMicrosPerMTok: o.outputMicrosPerMTok,
          cachedInputMicrosPerMTok: o.cachedInputMicrosPerMTok,
        })),
      });
    }
    await recordAudit(tx, actor, "plan.created", `plan:${planId}`, {
      name: plan.name,
      kind: plan.kind,
      multiplierBps: plan.multiplierBps,
      overrides: plan.overrides.length,
    });
    await publishHubEvent(tx, { kind: "tariffs_changed" });
  });
  return planId;
}
