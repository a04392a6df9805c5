/**
 * Earnings held for review: a detector holds an owner's earning on a request it flagged; the owner may not
 * request it for payout (`Treasury.requestPayout`) until an admin decides the flag. Approving or dismissing the
 * flag releases its holds; suspending its subject keeps them held. The journal is not touched: the earning was
 * credited at settlement as usual, and a hold only lowers what the owner may withdraw.
 */
import { newId, type Db } from "@wellspring/db/core";
import { ownerAccount } from "../billing/ledger.ts";

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

/** The reason of an admin's hold placed from a flag (the owner reads `holdReasonText`). */
export const REVIEW_HOLD = "review_hold";

/**
 * An admin's hold from a flag: everything the owner may request for payout now (their earnings account less
 * what is already held) is held until the flag's holds are released. Takes the lock `Treasury.requestPayout`
 * takes, so a payout asked at the same moment either comes first (and is not held) or sees the hold. Returns
 * the amount held (0: nothing was available).
 */
export async function holdAvailableEarnings(tx: Executor, ownerId: string, flagId: string, heldBy: string): Promise<bigint> {
  const account = ownerAccount(ownerId);
  await tx.$queryRaw`SELECT pg_advisory_xact_lock(hashtext(${account}))::text`;
  const rows = await tx.$queryRaw<{ s: string }[]>`
    SELECT (wellspring_account_total(${account}) - COALESCE((SELECT SUM(amount_micros) FROM earning_holds WHERE owner_id = ${ownerId} AND status = 'held'), 0))::text AS s`;
  const available = BigInt(rows[0]!.s);
  if (available <= 0n) return 0n;
  await tx.$executeRaw`
    INSERT INTO earning_holds (id, owner_id, agent_id, request_id, flag_id, reason, amount_micros, held_by)
    VALUES (${newId("hld")}, ${ownerId}, NULL, NULL, ${flagId}, ${REVIEW_HOLD}, ${available}, ${heldBy})`;
  return available;
}

/** What a flag holds now: µ$ and holds. */
export async function flagHeld(tx: Executor, flagId: string): Promise<{ amountMicros: bigint; holds: number }> {
  const rows = await tx.$queryRaw<{ amount: bigint | null; holds: bigint }[]>`
    SELECT SUM(amount_micros)::bigint AS amount, COUNT(*)::bigint AS holds FROM earning_holds WHERE flag_id = ${flagId} AND status = 'held'`;
  return { amountMicros: BigInt(rows[0]?.amount ?? 0n), holds: Number(rows[0]?.holds ?? 0n) };
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
    case "linked_accounts":
      return "Your agents served requests from your own account or from an account linked to yours (the same device, sign-in address, payout destination, redemption batch, provider key or egress address). Earnings on them are held until an administrator reviews whether it is self-dealing.";
    case REVIEW_HOLD:
      return "An administrator is holding these earnings while reviewing activity on your account; they cannot be requested for payout until the review ends.";
    default:
      return "Held while an administrator reviews activity on your account.";
  }
}
