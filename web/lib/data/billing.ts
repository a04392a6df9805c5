import "server-only";
import { Treasury } from "@wellspring/gateway";
import { pool } from "../db";
import type { Actor } from "./actor";

export type RedeemOutcome = { ok: true; amountMicros: bigint } | { ok: false; error: string };

/** Redeems a code into the actor's own wallet (never anyone else's). */
export async function redeemCode(actor: Actor, code: string): Promise<RedeemOutcome> {
  const r = await new Treasury(pool()).redeem(actor.userId, code);
  if (r.outcome === "redeemed") return { ok: true, amountMicros: r.amountMicros };
  return {
    ok: false,
    error:
      r.outcome === "invalid"
        ? "This code does not exist. Check it and try again."
        : r.outcome === "expired"
          ? "This code has expired."
          : "This code was already redeemed.",
  };
}
