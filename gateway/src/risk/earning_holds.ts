/**
 * Earnings held for review: a detector holds an owner's earning on a request it flagged; the owner may not
 * request it for payout (`Treasury.requestPayout`) until an admin decides the flag. Approving or dismissing the
 * flag releases its holds; suspending its subject keeps them held. The journal is not touched: the earning was
 * credited at settlement as usual, and a hold only lowers what the owner may withdraw.
 */
import { newId, type Db } from "@wellspring/db/core";

type Executor = Pick<Db, "$queryRaw" | "$executeRaw">;

export interface EarningHoldInput {
  ownerId: string;
  agentId: string | null;
  requestId: string;
  flagId: string;
  /** The flag's kind: why the owner's earnings are held. */
  reason: string;
  amountMicros: bigint;
}

/** Holds one request's earning (once per request). */
export async function holdEarning(tx: Executor, h: EarningHoldInput): Promise<void> {
  if (h.amountMicros <= 0n) return;
  await tx.$executeRaw`
    INSERT INTO earning_holds (id, owner_id, agent_id, request_id, flag_id, reason, amount_micros)
    VALUES (${newId("hld")}, ${h.ownerId}, ${h.agentId}, ${h.requestId}, ${h.flagId}, ${h.reason}, ${h.amountMicros})
    ON CONFLICT (request_id) DO NOTHING`;
}

/** Releases the holds a flag placed (it was approved or dismissed); returns how many. */
export async function releaseFlagHolds(tx: Executor, flagId: string, releasedBy: string): Promise<number> {
  return tx.$executeRaw`
    UPDATE earning_holds SET status = 'released', released_at = now(), released_by = ${releasedBy}
    WHERE flag_id = ${flagId} AND status = 'held'`;
}

export interface HeldEarnings {
  totalMicros: bigint;
  /** Per reason (the flag kind), what is held and since when. */
  reasons: { reason: string; flagId: string; amountMicros: bigint; requests: number; since: Date }[];
}

/** What an owner has held, and why. */
export async function heldEarnings(tx: Executor, ownerId: string): Promise<HeldEarnings> {
  const rows = await tx.$queryRaw<{ reason: string; flag_id: string; amount: bigint; requests: bigint; since: Date }[]>`
    SELECT reason, flag_id, SUM(amount_micros)::bigint AS amount, COUNT(*)::bigint AS requests, MIN(created_at) AS since
    FROM earning_holds WHERE owner_id = ${ownerId} AND status = 'held'
    GROUP BY reason, flag_id ORDER BY since`;
  const reasons = rows.map((r) => ({ reason: r.reason, flagId: r.flag_id, amountMicros: BigInt(r.amount), requests: Number(r.requests), since: r.since }));
  return { totalMicros: reasons.reduce((sum, r) => sum + r.amountMicros, 0n), reasons };
}

/** What the owner reads for a hold's reason (the flag kind that placed it). */
export function holdReasonText(reason: string): string {
  switch (reason) {
    case "usage_divergence":
      return "Your agent reported more tokens than the hub counted passing through it. Those requests were charged at the hub's count, and their earnings are held until an administrator reviews them.";
    default:
      return "Held while an administrator reviews activity on your account.";
  }
}
