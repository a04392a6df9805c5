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

/** Work still running after its call ended (a background response, a batch), holding its worst case until it settles. */
export interface PendingDeferred {
  kind: "response" | "openai_batch" | "anthropic_batch";
  objectId: string;
  model: string;
  heldMicros: bigint;
  createdAt: Date;
  /** The provider's status when last polled (queued, in_progress, validating, …), null before the first poll. */
  lastStatus: string | null;
}

/** Most rows shown; the total held is summed over all of them. */
export const PENDING_DEFERRED_ROWS = 50;

/** The actor's own pending deferred settlements (never anyone else's), newest first, and the total they hold. */
export async function pendingDeferred(actor: Actor): Promise<{ rows: PendingDeferred[]; count: number; heldMicros: bigint }> {
  const [rows, total] = await Promise.all([
    pool().query<{ kind: PendingDeferred["kind"]; object_id: string; model: string; held: string; created_at: Date; last_status: string | null }>(
      `SELECT kind::text AS kind, object_id, model, held_micros::text AS held, created_at, last_status
       FROM deferred_settlements WHERE user_id = $1 AND state = 'pending' ORDER BY created_at DESC, request_id LIMIT $2`,
      [actor.userId, PENDING_DEFERRED_ROWS],
    ),
    pool().query<{ n: string; held: string }>(
      "SELECT count(*)::text AS n, COALESCE(SUM(held_micros), 0)::text AS held FROM deferred_settlements WHERE user_id = $1 AND state = 'pending'",
      [actor.userId],
    ),
  ]);
  return {
    rows: rows.rows.map((r) => ({
      kind: r.kind,
      objectId: r.object_id,
      model: r.model,
      heldMicros: BigInt(r.held),
      createdAt: r.created_at,
      lastStatus: r.last_status,
    })),
    count: Number(total.rows[0]!.n),
    heldMicros: BigInt(total.rows[0]!.held),
  };
}
