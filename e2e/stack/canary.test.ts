/**
 * Quality canaries through real processes: the gateway (canaries every 2 s per agent × model, injected through its
 * environment), two real Deno agents, and two mock providers — one honest, one that answers as another model with
 * another tokenizer's counts (MockOptions.substitute). The honest agent's canaries pass; the substituting agent's
 * raise `model_substitution` with counts-only evidence. Canaries are not user traffic (no request record, no user
 * charged; the platform pays the owner of a passing canary),
 * and the admin API shows each agent's canary summary and tier recommendation.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE, newId } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "../../mock-provider/src/mod.ts";
import { createLogger } from "../../gateway/src/log.ts";
import { CANARY_RESULT_RETENTION_MS, CanaryScheduler } from "../../gateway/src/risk/canary.ts";
import { canaryPrompt, promptTokenBand } from "../../gateway/src/risk/canary_check.ts";
import { CANARY_RECOMMENDATION_RESULTS_MIN } from "../../gateway/src/ops/canaries.ts";
import { AgentRegistry } from "../../gateway/src/tunnel/registry.ts";
import { Ledger } from "../../gateway/src/billing/ledger.ts";
import { officialCostMicros, ownerEarningMicros, TIER_BPS } from "../../gateway/src/billing/prices.ts";
import {
  adminFetch,
  enrollAgent,
  settledWallet,
  startAgentProc,
  startStack,
  TEST_USER_FUNDING_MICROS,
  waitFor,
  type AgentProc,
  type Stack,
} from "./harness.ts";

const MODELS = { openai: ["gpt-4o-mini", "text-embedding-3-small"], anthropic: ["claude-haiku-4-5"] };
/** Chat models of MODELS: the embedding model gets no canary. */
const CHAT_MODELS = ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"];

let stack: Stack;
let pool: pg.Pool;
let substituting: MockProvider;
let cheat: AgentProc;
let cheatOwnerId: string;

beforeAll(async () => {
  stack = await startStack({
    models: MODELS,
    gatewayEnv: { CANARY_INTERVAL_MS: "2000", CANARY_FIRST_DELAY_MS_MAX: "0", CANARY_TICK_MS: "100" },
  });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
  substituting = await startMockProvider({ substitute: { model: "cheap-model-1", inputTokensFactor: 2.5 } });
  cheatOwnerId = newId("usr");
  await stack.db.user.create({ data: { id: cheatOwnerId, email: `${cheatOwnerId}@owner.test`, isOwner: true } });
  const enrolled = await enrollAgent(stack.db, stack.gateway, cheatOwnerId, { models: MODELS });
  cheat = await startAgentProc(enrolled.dataDir, enrolled.agentId, substituting.origin);
}, 180_000);
afterAll(async () => {
  await cheat?.stop();
  await substituting?.close();
  await pool?.end();
  await stack?.close();
});

interface ResultRow {
  model: string;
  ok: boolean;
  ttfb_ms: number | null;
  error: string | null;
  answered_model: string | null;
  prompt_tokens: number | null;
  expected_prompt_tokens: number;
  problems: string[];
}

const results = async (agentId: string) =>
  (
    await pool.query<ResultRow>(
      "SELECT model, ok, ttfb_ms, error, answered_model, prompt_tokens, expected_prompt_tokens, problems FROM canary_results WHERE agent_id = $1 ORDER BY at",
      [agentId],
    )
  ).rows;

/** Waits until every chat model of the agent has at least `perModel` results. */
async function resultsFor(agentId: string, perModel: number): Promise<ResultRow[]> {
  await waitFor(async () => {
    const rows = await results(agentId);
    return CHAT_MODELS.every((m) => rows.filter((r) => r.model === m).length >= perModel);
  }, 60_000);
  return results(agentId);
}

const flags = async (agentId: string) =>
  (
    await pool.query<{ severity: number; evidence: Record<string, unknown> }>(
      "SELECT severity, evidence FROM risk_flags WHERE kind = 'model_substitution' AND subject = $1",
      [`agent:${agentId}`],
    )
  ).rows;

describe("quality canaries", () => {
  it("an honest agent's canaries pass: the model answers as itself, with counts in its family's band", async () => {
    const rows = await resultsFor(stack.agent.agentId, 2);
    expect(new Set(rows.map((r) => r.model))).toEqual(new Set(CHAT_MODELS));
    for (const r of rows) {
      expect(r).toMatchObject({ ok: true, error: null, problems: [] });
      expect(r.ttfb_ms).toBeGreaterThanOrEqual(0);
      const band = promptTokenBand(r.model.split(":")[1]!, r.expected_prompt_tokens)!;
      expect(r.prompt_tokens).toBeGreaterThanOrEqual(band.min);
      expect(r.prompt_tokens).toBeLessThanOrEqual(band.max);
    }
    // The honest provider followed the canary's instruction: it saw the canary's text.
    expect(stack.mock.requests.some((q) => q.path === "/v1/chat/completions")).toBe(true);
    expect(await flags(stack.agent.agentId)).toEqual([]);
  });

  it("a substituted model is detected by the canary and flagged with counts-only evidence", async () => {
    const rows = await resultsFor(cheat.agentId, 1);
    for (const r of rows) {
      expect(r.ok).toBe(false);
      expect(r.error).toBeNull();
      expect(r.answered_model).toBe("cheap-model-1");
      expect(r.problems).toEqual(["model_differs", "prompt_tokens_out_of_range"]);
    }
    await waitFor(async () => (await flags(cheat.agentId)).length === 1, 10_000);
    const [flag] = await flags(cheat.agentId);
    expect(flag!.severity).toBe(3);
    const evidence = flag!.evidence as { agentId: string; ownerId: string; failedCanaries: number; models: string[]; latest: Record<string, unknown> };
    expect(evidence).toMatchObject({ agentId: cheat.agentId, ownerId: cheatOwnerId });
    expect(evidence.failedCanaries).toBeGreaterThanOrEqual(1);
    expect(CHAT_MODELS).toEqual(expect.arrayContaining(evidence.models));
    expect(evidence.latest).toMatchObject({ answeredModel: "cheap-model-1", problems: ["model_differs", "prompt_tokens_out_of_range"] });
    const latest = evidence.latest as { promptTokens: number; promptTokenBand: { max: number } };
    expect(latest.promptTokens).toBeGreaterThan(latest.promptTokenBand.max);
    // Model names, counts and codes: not the canary's text.
    const fixedText = canaryPrompt("X").replace(/ X$/, "");
    expect(JSON.stringify(flag!.evidence)).not.toContain(fixedText.slice(0, 40));
    expect(await flags(stack.agent.agentId)).toEqual([]);
  });

  it("canaries are not user traffic: no request record and no user charged; the platform pays the owner of each canary that passed", async () => {
    const count = async (table: string) => (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;
    expect(await count("request_records")).toBe(0);
    expect(await count("reservations")).toBe(0);
    expect((await settledWallet(pool, stack.userId)).available).toBe(TEST_USER_FUNDING_MICROS);
    // Each passing canary so far is paid once, margin → owner, at the official price of its reported usage × tier A.
    const passed = (
      await pool.query<{ id: string; model: string; prompt_tokens: number; completion_tokens: number }>(
        "SELECT id, model, prompt_tokens, completion_tokens FROM canary_results WHERE agent_id = $1 AND ok",
        [stack.agent.agentId],
      )
    ).rows;
    expect(passed.length).toBeGreaterThanOrEqual(CHAT_MODELS.length);
    type Entry = { tx_id: string; account: string; amount: string };
    const payments = async () =>
      (await pool.query<Entry>("SELECT tx_id, account, amount_micros::text AS amount FROM journal_entries WHERE kind = 'canary' ORDER BY tx_id, amount_micros"))
        .rows;
    await waitFor(async () => {
      const txs = new Set((await payments()).map((e) => e.tx_id));
      return passed.every((c) => txs.has(`canary:${c.id}`));
    }, 10_000);
    const entries = await payments();
    for (const c of passed) {
      const price = DEFAULT_PRICE_TABLE.find((p) => `${p.provider}:${p.model}` === c.model)!;
      const earning = ownerEarningMicros(
        officialCostMicros({ inputTokens: c.prompt_tokens, outputTokens: c.completion_tokens, cachedInputTokens: 0 }, price),
        TIER_BPS.A,
      );
      expect(earning).toBeGreaterThan(0n);
      expect(entries.filter((e) => e.tx_id === `canary:${c.id}`)).toEqual([
        { tx_id: `canary:${c.id}`, account: "platform:margin", amount: String(-earning) },
        { tx_id: `canary:${c.id}`, account: `owner:${stack.ownerId}`, amount: String(earning) },
      ]);
    }
    // A substituting agent's canaries are not paid: its answers were not the claimed model's.
    expect(entries.filter((e) => e.account === `owner:${cheatOwnerId}`)).toEqual([]);
    expect((await new Ledger(pool).audit()).problems).toEqual([]);
  });

  it("the admin API shows each agent's canaries and the tier they recommend", async () => {
    await resultsFor(stack.agent.agentId, CANARY_RECOMMENDATION_RESULTS_MIN / 2);
    await resultsFor(cheat.agentId, CANARY_RECOMMENDATION_RESULTS_MIN / 2);
    const res = await adminFetch(stack.gateway.adminOrigin, "/admin/v1/agents");
    expect(res.status).toBe(200);
    type Canaries = {
      total: number;
      error_rate_bps: number;
      ttfb_p50_ms: number | null;
      substitutions: number;
      last: { ok: boolean };
      tier_recommendation: string | null;
    };
    const { data } = (await res.json()) as { data: { id: string; canaries: Canaries | null }[] };
    const honest = data.find((a) => a.id === stack.agent.agentId)!.canaries!;
    expect(honest.total).toBeGreaterThanOrEqual(CANARY_RECOMMENDATION_RESULTS_MIN);
    expect(honest).toMatchObject({ error_rate_bps: 0, substitutions: 0, last: { ok: true } });
    expect(honest.ttfb_p50_ms).toBeGreaterThanOrEqual(0);
    // The mock answers in milliseconds and never fails: S by the documented rule.
    expect(honest.tier_recommendation).toBe("S");
    const substituted = data.find((a) => a.id === cheat.agentId)!.canaries!;
    expect(substituted.substitutions).toBe(substituted.total);
    expect(substituted).toMatchObject({ last: { ok: false }, tier_recommendation: "review" });
  });

  it("results older than the retention are pruned, newer ones kept", async () => {
    const old = newId("cnr");
    await pool.query(
      `INSERT INTO canary_results (id, agent_id, model, at, ok, duration_ms, expected_prompt_tokens, problems)
       VALUES ($1, $2, 'openai:gpt-4o-mini', now() - make_interval(secs => $3), true, 1, 1, '{}')`,
      [old, stack.agent.agentId, CANARY_RESULT_RETENTION_MS / 1000 + 60],
    );
    const before = (await results(stack.agent.agentId)).length;
    const scheduler = new CanaryScheduler({ db: stack.db, log: createLogger({}, "error"), registry: new AgentRegistry(), intervalMs: 0 });
    expect(await scheduler.prune()).toBe(1);
    expect((await pool.query("SELECT 1 FROM canary_results WHERE id = $1", [old])).rowCount).toBe(0);
    expect((await results(stack.agent.agentId)).length).toBeGreaterThanOrEqual(before - 1);
  });
});
