/**
 * What the quality canaries (gateway/src/risk/canary.ts) say about each agent, over the last
 * CANARY_SUMMARY_WINDOW_MS: the last result, the median time to first byte, the error rate, substitutions found,
 * and the tier the results recommend. Read by the admin API (`GET /admin/v1/agents`) and the admin's Users &
 * agents page, so both show the same numbers.
 *
 * The recommendation (docs/ARCHITECTURE.md, "Quality canaries"), first rule that applies:
 * 1. fewer than CANARY_RECOMMENDATION_RESULTS_MIN results in the window: none (`null`);
 * 2. any canary found a substitution: `review` (the open `model_substitution` flag says why);
 * 3. error rate ≤ CANARY_S_ERROR_RATE_BPS_MAX and median TTFB ≤ CANARY_S_TTFB_MS_MAX: `S`;
 * 4. error rate ≤ CANARY_A_ERROR_RATE_BPS_MAX: `A`;
 * 5. otherwise: `discount`.
 * It is advice: only an admin sets a tier.
 */
import type { Db } from "@wellspring/db/core";

/** How far back the summary reads, ms (7 days). */
export const CANARY_SUMMARY_WINDOW_MS = 7 * 24 * 60 * 60 * 1000;
/** Results in the window below which no tier is recommended. */
export const CANARY_RECOMMENDATION_RESULTS_MIN = 4;
/** Highest error rate for an S recommendation, basis points of the window's canaries (2 %). */
export const CANARY_S_ERROR_RATE_BPS_MAX = 200;
/** Highest median time to first byte for an S recommendation, ms. */
export const CANARY_S_TTFB_MS_MAX = 3_000;
/** Highest error rate for an A recommendation, basis points (10 %). */
export const CANARY_A_ERROR_RATE_BPS_MAX = 1_000;

export type CanaryRecommendation = "S" | "A" | "discount" | "review";

export interface AgentCanarySummary {
  agentId: string;
  /** Canaries in the window, those that got no answer (errors), and those whose answer was not the claimed model. */
  total: number;
  errors: number;
  substitutions: number;
  /** Errors ÷ total, basis points. */
  errorRateBps: number;
  /** Median time to first byte of the answered canaries, ms; null when none was answered. */
  ttfbP50Ms: number | null;
  last: { at: Date; ok: boolean; model: string; error: string | null; problems: string[] } | null;
  lastOkAt: Date | null;
  lastFailedAt: Date | null;
  recommendation: CanaryRecommendation | null;
}

/** The documented rule (module comment) on a window's counts. */
export function canaryRecommendation(s: Pick<AgentCanarySummary, "total" | "substitutions" | "errorRateBps" | "ttfbP50Ms">): CanaryRecommendation | null {
  if (s.total < CANARY_RECOMMENDATION_RESULTS_MIN) return null;
  if (s.substitutions > 0) return "review";
  if (s.errorRateBps <= CANARY_S_ERROR_RATE_BPS_MAX && s.ttfbP50Ms !== null && s.ttfbP50Ms <= CANARY_S_TTFB_MS_MAX) return "S";
  if (s.errorRateBps <= CANARY_A_ERROR_RATE_BPS_MAX) return "A";
  return "discount";
}

interface Row {
  agent_id: string;
  total: number;
  errors: number;
  substitutions: number;
  ttfb_p50: number | null;
  last_at: Date;
  last_ok: boolean;
  last_model: string;
  last_error: string | null;
  /** Comma-separated problem codes of the last canary ('' when none). */
  last_problems: string | null;
  last_ok_at: Date | null;
  last_failed_at: Date | null;
}

/** The canary summaries of these agents (those with no canary in the window are absent); the caller scopes `agentIds`. */
export async function canarySummaries(
  db: Pick<Db, "$queryRaw">,
  agentIds: readonly string[],
  nowMs: number = Date.now(),
): Promise<Map<string, AgentCanarySummary>> {
  if (agentIds.length === 0) return new Map();
  const since = new Date(nowMs - CANARY_SUMMARY_WINDOW_MS);
  const rows = await db.$queryRaw<Row[]>`
    SELECT agent_id,
      count(*)::int AS total,
      count(*) FILTER (WHERE error IS NOT NULL)::int AS errors,
      count(*) FILTER (WHERE cardinality(problems) > 0)::int AS substitutions,
      (percentile_cont(0.5) WITHIN GROUP (ORDER BY ttfb_ms))::float8 AS ttfb_p50,
      max(at) AS last_at,
      (array_agg(ok ORDER BY at DESC))[1] AS last_ok,
      (array_agg(model ORDER BY at DESC))[1] AS last_model,
      (array_agg(error ORDER BY at DESC))[1] AS last_error,
      (array_agg(array_to_string(problems, ',') ORDER BY at DESC))[1] AS last_problems,
      max(at) FILTER (WHERE ok) AS last_ok_at,
      max(at) FILTER (WHERE NOT ok) AS last_failed_at
    FROM canary_results
    WHERE agent_id = ANY(${[...agentIds]}::text[]) AND at > ${since}
    GROUP BY agent_id`;
  const out = new Map<string, AgentCanarySummary>();
  for (const r of rows) {
    const counts = {
      total: r.total,
      substitutions: r.substitutions,
      errorRateBps: Math.round((r.errors * 10_000) / r.total),
      ttfbP50Ms: r.ttfb_p50 === null ? null : Math.round(r.ttfb_p50),
    };
    out.set(r.agent_id, {
      agentId: r.agent_id,
      ...counts,
      errors: r.errors,
      last: { at: r.last_at, ok: r.last_ok, model: r.last_model, error: r.last_error, problems: r.last_problems ? r.last_problems.split(",") : [] },
      lastOkAt: r.last_ok_at,
      lastFailedAt: r.last_failed_at,
      recommendation: canaryRecommendation(counts),
    });
  }
  return out;
}
