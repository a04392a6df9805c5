/**
 * The edge ledger as the owner's agent page shows it: the hub's tail of each agent's receipt chain beside the tail
 * the agent last reported (CHAIN_TAIL), "out of sync" when the hub's comparison raised `ledger_out_of_sync` (an
 * open flag: the stored tails are snapshots taken at different moments, so the page does not compare them
 * itself), today's earnings as the hub settled them beside the agent's own computation in its receipts, the
 * receipts the hub keeps as disputed, and whether the chain stopped at a receipt the hub could not keep.
 */
import type { Db } from "@wellspring/db/core";
import { LEDGER_OUT_OF_SYNC, RECEIPT_REFUSED } from "../ledger/receipts.ts";

export interface AgentLedgerSummary {
  /** The last receipt the hub holds (seq 0 when none), hash hex. */
  hubTail: { seq: number; hash: string | null };
  /** What the agent last reported, and when; null before its first report. */
  agentTail: { seq: number; hash: string | null; reportedAt: Date } | null;
  /** The hub's comparison found the chains differ, from this receipt on. */
  outOfSync: { firstDifferingSeq: number; since: Date } | null;
  /** Since 00:00 UTC: the hub's settlements of this agent's requests, and what the agent computed in its receipts. */
  today: { hubEarningMicros: bigint; agentEarningMicros: bigint; receipts: number; agentUnpriced: number };
  /** Receipts the hub keeps in the chain as disputed (never countersigned), and the latest one. */
  disputed: { count: number; latest: { seq: number; reason: string; detail: string } | null };
  /**
   * The hub refused a receipt it could not keep (it does not verify or does not link): no later receipt is kept
   * until an operator resolves the open `receipt_refused` flag.
   */
  stopped: { seq: number; refused: string; detail: string; since: Date } | null;
}

interface AgentTailColumns {
  id: string;
  ownerId: string;
  ledgerTailSeq: number | null;
  ledgerTailHash: string | null;
  ledgerReportedAt: Date | null;
}

function startOfUtcDay(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

/** One summary per agent given (an owner's own agents: the caller authorizes the rows). */
export async function agentLedgerSummaries(db: Db, agents: AgentTailColumns[], now = new Date()): Promise<Map<string, AgentLedgerSummary>> {
  const out = new Map<string, AgentLedgerSummary>();
  if (agents.length === 0) return out;
  const ids = agents.map((a) => a.id);
  const owners = [...new Set(agents.map((a) => a.ownerId))];
  const day = startOfUtcDay(now);
  const [tails, settled, receipted, flags, disputes, refusals] = await Promise.all([
    db.$queryRaw<{ agent_id: string; seq: number; hash: string }[]>`
      SELECT DISTINCT ON (agent_id) agent_id, seq, encode(hash, 'hex') AS hash
        FROM agent_receipts WHERE agent_id = ANY(${ids}::text[]) ORDER BY agent_id, seq DESC`,
    db.$queryRaw<{ agent_id: string; earning: bigint }[]>`
      SELECT agent_id, COALESCE(SUM(earning_micros), 0)::bigint AS earning
        FROM reservations
       WHERE owner_id = ANY(${owners}::text[]) AND settled_at >= ${day} AND agent_id = ANY(${ids}::text[]) AND status = 'settled'
       GROUP BY agent_id`,
    db.$queryRaw<{ agent_id: string; agent_earning: bigint; receipts: number; unpriced: number }[]>`
      SELECT agent_id, COALESCE(SUM(agent_earning_micros) FILTER (WHERE agent_earning_micros >= 0), 0)::bigint AS agent_earning,
             COUNT(*)::int AS receipts, (COUNT(*) FILTER (WHERE agent_earning_micros < 0))::int AS unpriced
        FROM agent_receipts WHERE agent_id = ANY(${ids}::text[]) AND ended_at >= ${day}
       GROUP BY agent_id`,
    db.riskFlag.findMany({
      where: { kind: LEDGER_OUT_OF_SYNC, status: "open", subject: { in: ids.map((id) => `agent:${id}`) } },
      select: { subject: true, evidence: true, createdAt: true },
    }),
    db.$queryRaw<{ agent_id: string; count: number; seq: number; disputed: string; detail: string | null }[]>`
      SELECT DISTINCT ON (agent_id) agent_id, (COUNT(*) OVER (PARTITION BY agent_id))::int AS count, seq, disputed, dispute_detail AS detail
        FROM agent_receipts WHERE agent_id = ANY(${ids}::text[]) AND disputed IS NOT NULL ORDER BY agent_id, seq DESC`,
    db.riskFlag.findMany({
      where: { kind: RECEIPT_REFUSED, status: "open", subject: { in: ids.map((id) => `agent:${id}`) } },
      select: { subject: true, evidence: true, lastRaisedAt: true },
    }),
  ]);
  for (const a of agents) {
    const tail = tails.find((t) => t.agent_id === a.id);
    const flag = flags.find((f) => f.subject === `agent:${a.id}`);
    const evidence = (flag?.evidence ?? {}) as { firstDifferingSeq?: unknown };
    const mine = receipted.find((r) => r.agent_id === a.id);
    out.set(a.id, {
      hubTail: { seq: tail?.seq ?? 0, hash: tail?.hash ?? null },
      agentTail: a.ledgerReportedAt ? { seq: a.ledgerTailSeq ?? 0, hash: a.ledgerTailHash, reportedAt: a.ledgerReportedAt } : null,
      outOfSync: flag ? { firstDifferingSeq: typeof evidence.firstDifferingSeq === "number" ? evidence.firstDifferingSeq : 0, since: flag.createdAt } : null,
      today: {
        hubEarningMicros: BigInt(settled.find((s) => s.agent_id === a.id)?.earning ?? 0n),
        agentEarningMicros: BigInt(mine?.agent_earning ?? 0n),
        receipts: mine?.receipts ?? 0,
        agentUnpriced: mine?.unpriced ?? 0,
      },
      disputed: disputeOf(disputes.find((d) => d.agent_id === a.id)),
      stopped: stoppedBy(refusals.find((f) => f.subject === `agent:${a.id}`)),
    });
  }
  return out;
}

function disputeOf(row: { count: number; seq: number; disputed: string; detail: string | null } | undefined): AgentLedgerSummary["disputed"] {
  if (!row) return { count: 0, latest: null };
  return { count: row.count, latest: { seq: row.seq, reason: row.disputed, detail: row.detail ?? "" } };
}

/** The open `receipt_refused` flag's latest evidence, when it was a receipt the hub could not keep. */
function stoppedBy(flag: { evidence: unknown; lastRaisedAt: Date } | undefined): AgentLedgerSummary["stopped"] {
  const e = (flag?.evidence ?? {}) as { kept?: unknown; seq?: unknown; refused?: unknown; detail?: unknown };
  if (!flag || e.kept !== false) return null;
  return {
    seq: typeof e.seq === "number" ? e.seq : 0,
    refused: typeof e.refused === "string" ? e.refused : "invalid",
    detail: typeof e.detail === "string" ? e.detail : "",
    since: flag.lastRaisedAt,
  };
}
