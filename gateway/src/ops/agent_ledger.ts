/**
 * The edge ledger as the owner's agent page shows it: the hub's tail of each agent's receipt chain beside the tail
 * the agent last reported (CHAIN_TAIL), "out of sync" when the hub's comparison raised `ledger_out_of_sync` (an
 * open flag: the stored tails are snapshots taken at different moments, so the page does not compare them
 * itself), and today's earnings as the hub settled them beside the agent's own computation in its receipts.
 */
import type { Db } from "@wellspring/db/core";
import { LEDGER_OUT_OF_SYNC } from "../ledger/receipts.ts";

export interface AgentLedgerSummary {
  /** The last receipt the hub holds (seq 0 when none), hash hex. */
  hubTail: { seq: number; hash: string | null };
  /** What the agent last reported, and when; null before its first report. */
  agentTail: { seq: number; hash: string | null; reportedAt: Date } | null;
  /** The hub's comparison found the chains differ, from this receipt on. */
  outOfSync: { firstDifferingSeq: number; since: Date } | null;
  /** Since 00:00 UTC: the hub's settlements of this agent's requests, and what the agent computed in its receipts. */
  today: { hubEarningMicros: bigint; agentEarningMicros: bigint; receipts: number; agentUnpriced: number };
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
  const [tails, settled, receipted, flags] = await Promise.all([
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
    });
  }
  return out;
}
