/**
 * Usage the hub can check, through the real gateway, a real Deno agent and the mock provider playing a dishonest
 * provider that reports a million tokens per call: the charge is capped to the hub's own count within the same
 * request, the agent is flagged with counts-only evidence, the owner's earning is held out of what they may
 * withdraw until an admin reviews the flag (admin API), and the books stay balanced and audited clean. From the
 * flag, the admin then holds the owner's newer earnings, releases them, suspends the agent (its tunnel is closed
 * at once) and reinstates it, each audited; a suspended key is refused at once with `key_suspended`. A new
 * agent's earnings are pending for its probation and payable when it ends (the treasury's clock injected).
 */
import pg from "pg";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE } from "@wellspring/db";
import { Ledger } from "../../gateway/src/billing/ledger.ts";
import { officialCostMicros } from "../../gateway/src/billing/prices.ts";
import { Treasury } from "../../gateway/src/ops/treasury.ts";
import { raiseRiskFlag } from "../../gateway/src/risk/flags.ts";
import { adminFetch, settledWallet, startStack, waitFor, type Stack } from "./harness.ts";

let stack: Stack;
let pool: pg.Pool;
beforeAll(async () => {
  stack = await startStack({ gatewayEnv: { BILLING_ENABLED: "1" } });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
}, 120_000);
afterAll(async () => {
  await pool?.end();
  await stack?.close();
});

const FABRICATED = "[mock input_tokens=1000000 output_tokens=1000000]";
const PROMPT_WORDS = "a question about the weather in Lisbon";

interface Row {
  input: number;
  output: number;
  charge: bigint;
  earning: bigint;
  official: bigint;
  estimated: boolean;
}

async function settledRow(requestId: string): Promise<Row> {
  let row: Record<string, unknown> | undefined;
  await waitFor(async () => {
    row = (await pool.query("SELECT * FROM reservations WHERE request_id = $1 AND status = 'settled'", [requestId])).rows[0] as
      Record<string, unknown> | undefined;
    return row !== undefined;
  });
  return {
    input: Number(row!.input_tokens),
    output: Number(row!.output_tokens),
    charge: BigInt(row!.charge_micros as string),
    earning: BigInt(row!.earning_micros as string),
    official: BigInt(row!.official_micros as string),
    estimated: row!.estimated as boolean,
  };
}

interface FlagRow {
  id: string;
  severity: number;
  raised_count: number;
  evidence: { cappedRequests: number; requestIds: string[]; heldMicros: string; latest: { reported: { inputTokens: number; outputTokens: number } } };
}

const flags = async () =>
  (
    await pool.query<FlagRow>("SELECT id, severity, raised_count, evidence FROM risk_flags WHERE kind = 'usage_divergence' AND subject = $1", [
      `agent:${stack.agent.agentId}`,
    ])
  ).rows;
const heldFor = async (requestId: string) =>
  (await pool.query<{ amount_micros: string; status: string }>("SELECT amount_micros, status FROM earning_holds WHERE request_id = $1", [requestId])).rows;

describe("a provider that makes up usage", () => {
  const openai = () => new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  const fabricated: string[] = [];

  it("an honest call is charged as reported: no cap, no flag, nothing held", async () => {
    const res = await openai()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: PROMPT_WORDS }] })
      .withResponse();
    const requestId = res.response.headers.get("x-wellspring-request-id")!;
    const row = await settledRow(requestId);
    expect(row.input).toBe(res.data.usage!.prompt_tokens);
    expect(row.output).toBe(res.data.usage!.completion_tokens);
    expect(row.estimated).toBe(false);
    expect(await flags()).toEqual([]);
    expect(await heldFor(requestId)).toEqual([]);
  });

  it("1M reported tokens are capped to the hub's count and flagged within the one request (OpenAI, JSON)", async () => {
    const res = await openai()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `${FABRICATED} ${PROMPT_WORDS}` }] })
      .withResponse();
    // The user's bytes are the provider's, untouched: the SDK sees the made-up usage…
    expect(res.data.usage!.prompt_tokens).toBe(1_000_000);
    const requestId = res.response.headers.get("x-wellspring-request-id")!;
    fabricated.push(requestId);
    // …and the hub charges what it counted: o200k × 1.25 + slack, a few hundred tokens at most.
    const row = await settledRow(requestId);
    expect(row.input).toBeLessThan(300);
    expect(row.output).toBeLessThan(300);
    expect(row.estimated).toBe(true);
    const price = DEFAULT_PRICE_TABLE.find((p) => p.model === "gpt-4o-mini")!;
    expect(row.official).toBe(officialCostMicros({ inputTokens: row.input, outputTokens: row.output, cachedInputTokens: 0 }, price));
    expect(row.charge).toBeLessThan(1_000n); // < $0.001, where 1M + 1M tokens cost $0.75
    await waitFor(async () => (await flags()).length === 1, 5_000);
    const [flag] = await flags();
    expect(flag!.severity).toBe(3);
    expect(flag!.evidence.requestIds).toEqual([requestId]);
    expect(flag!.evidence.latest.reported).toMatchObject({ inputTokens: 1_000_000, outputTokens: 1_000_000 });
    // Counts and ids only: nothing of the prompt or the answer.
    expect(JSON.stringify(flag!.evidence)).not.toMatch(/Lisbon|weather|mock/);
    await waitFor(async () => (await heldFor(requestId)).length === 1, 5_000);
    expect(await heldFor(requestId)).toEqual([{ amount_micros: row.earning.toString(), status: "held" }]);
  });

  it("a streamed Anthropic call reporting 1M tokens is capped and raises the same open flag again", async () => {
    const anthropic = new Anthropic({ baseURL: stack.baseUrl, apiKey: stack.apiKey, maxRetries: 0 });
    const stream = anthropic.messages.stream({
      model: "claude-haiku-4-5",
      max_tokens: 64,
      messages: [{ role: "user", content: `${FABRICATED} ${PROMPT_WORDS}` }],
    });
    const message = await stream.finalMessage();
    expect(message.usage.output_tokens).toBe(1_000_000);
    const requestId = (await stream.withResponse()).response.headers.get("x-wellspring-request-id")!;
    fabricated.push(requestId);
    const row = await settledRow(requestId);
    expect(row.input).toBeLessThan(2_000); // × 2 + 1,024 (Claude's tokenizer and tool prompt)
    expect(row.output).toBeLessThan(200);
    await waitFor(async () => (await flags())[0]?.raised_count === 2, 5_000);
    const [flag] = await flags();
    expect(flag!.evidence.cappedRequests).toBe(2);
    expect(flag!.evidence.requestIds).toEqual(fabricated);
    await waitFor(async () => (await heldFor(requestId)).length === 1, 5_000);
  });

  it("held earnings cannot be withdrawn until an admin approves the flag; the books stay balanced", async () => {
    const treasury = new Treasury(pool);
    const balance = await treasury.ownerBalance(stack.ownerId);
    const held = (
      await pool.query<{ s: string }>("SELECT SUM(amount_micros)::text AS s FROM earning_holds WHERE owner_id = $1 AND status = 'held'", [stack.ownerId])
    ).rows[0]!.s;
    expect(BigInt(held)).toBeGreaterThan(0n);
    const refused = await treasury.requestPayout(stack.ownerId, balance);
    expect(refused).toEqual({ outcome: "insufficient_earnings", availableMicros: balance - BigInt(held) });

    // The admin reads the flag with its evidence, and approves it: the holds are released.
    const list = (await (await adminFetch(stack.gateway.adminOrigin, "/admin/v1/risk-flags")).json()) as {
      data: { id: string; kind: string; subject: string; evidence: { heldMicros: string } }[];
    };
    const flag = list.data.find((f) => f.kind === "usage_divergence")!;
    expect(flag.subject).toBe(`agent:${stack.agent.agentId}`);
    expect(flag.evidence.heldMicros).toBe(held);
    const missingNote = await adminFetch(stack.gateway.adminOrigin, `/admin/v1/risk-flags/${flag.id}`, { method: "POST", body: { decision: "approved" } });
    expect(missingNote.status).toBe(400);
    const decided = await adminFetch(stack.gateway.adminOrigin, `/admin/v1/risk-flags/${flag.id}`, {
      method: "POST",
      body: { decision: "approved", note: "checked with the owner" },
    });
    expect(decided.status).toBe(200);
    for (const requestId of fabricated) expect((await heldFor(requestId))[0]!.status).toBe("released");
    expect((await treasury.requestPayout(stack.ownerId, balance)).outcome).toBe("requested");
    const trail = await pool.query<{ action: string; detail: { releasedHolds: number } }>("SELECT action, detail FROM audit_events WHERE subject = $1", [
      `flag:${flag.id}`,
    ]);
    expect(trail.rows).toEqual([{ action: "risk.approved", detail: expect.objectContaining({ releasedHolds: 2 }) }]);
    await settledWallet(pool, stack.userId);
    expect((await new Ledger(pool).audit()).problems).toEqual([]);
  });

  it("a new agent's earnings wait out its probation: refused for payout until the period ends (injected clock)", async () => {
    const HOUR = 3_600_000;
    const enrolledAt = (await stack.db.agent.findUniqueOrThrow({ where: { id: stack.agent.agentId } })).createdAt;
    // The hub's clock at 1 h 59 min and at 2 h after the agent's enrollment, with a 2-hour probation.
    const at = (ms: number) => new Treasury(pool, { probationMs: 2 * HOUR, now: () => new Date(enrolledAt.getTime() + ms) });
    const res = await openai()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: PROMPT_WORDS }] })
      .withResponse();
    const earned = (await settledRow(res.response.headers.get("x-wellspring-request-id")!)).earning;
    const during = at(2 * HOUR - 60_000);
    const pending = await during.probationPending(stack.ownerId);
    // Everything this agent earned is pending (what earlier tests held and released or paid out included).
    expect(pending.agents.map((a) => [a.agentId, a.endsAt.getTime()])).toEqual([[stack.agent.agentId, enrolledAt.getTime() + 2 * HOUR]]);
    expect(pending.totalMicros).toBeGreaterThanOrEqual(earned);
    expect(await during.requestPayout(stack.ownerId, earned)).toEqual({ outcome: "insufficient_earnings", availableMicros: 0n });
    const after = at(2 * HOUR);
    expect((await after.probationPending(stack.ownerId)).totalMicros).toBe(0n);
    expect((await after.requestPayout(stack.ownerId, earned)).outcome).toBe("requested");
  });

  it("from the flag an admin holds and releases the owner's earnings, suspends and reinstates the agent, each audited", async () => {
    const treasury = new Treasury(pool);
    const flagId = (await flags())[0]!.id;
    const act = (action: string, note?: string) =>
      adminFetch(stack.gateway.adminOrigin, `/admin/v1/risk-flags/${flagId}/actions`, { method: "POST", body: { action, ...(note ? { note } : {}) } });
    // Everything was requested for payout above: nothing to hold yet.
    expect((await act("hold_earnings", "hold what is left")).status).toBe(409);
    // An honest call earns something new; the admin holds it.
    const res = await openai()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: PROMPT_WORDS }] })
      .withResponse();
    const earned = (await settledRow(res.response.headers.get("x-wellspring-request-id")!)).earning;
    expect(earned).toBeGreaterThan(0n);
    expect(await treasury.ownerBalance(stack.ownerId)).toBe(earned);
    const noNote = await act("hold_earnings");
    expect(noNote.status).toBe(400);
    expect(((await noNote.json()) as { error: { param: string } }).error.param).toBe("note");
    const held = await act("hold_earnings", "holding while the owner explains the made-up usage");
    expect(held.status).toBe(200);
    expect(await held.json()).toEqual({ id: flagId, action: "hold_earnings", owner_id: stack.ownerId, held_micros: earned.toString() });
    expect(await treasury.requestPayout(stack.ownerId, 1n)).toEqual({ outcome: "insufficient_earnings", availableMicros: 0n });
    // Released: all of it can be asked for again; a second release finds nothing held.
    const released = await act("release_earnings", "owner explained");
    expect(await released.json()).toEqual({ id: flagId, action: "release_earnings", released_micros: earned.toString(), released_holds: 1 });
    expect((await act("release_earnings", "again")).status).toBe(409);
    expect((await treasury.requestPayout(stack.ownerId, earned)).outcome).toBe("requested");

    // Suspended: the gateway closes the agent's tunnel at once (AGENT_SUSPENDED); the agent keeps running and keeps
    // asking (every 0.5–1 s in tests, 5 minutes by default), refused each time, and nothing is served meanwhile.
    expect((await act("suspend_subject", "suspended pending review")).status).toBe(200);
    const suspendedLines = () => stack.agent.lines.filter((l) => /an administrator suspended this agent \(close code 4034\)/.test(l)).length;
    await waitFor(() => suspendedLines() >= 2, 10_000);
    expect(stack.agent.child.exitCode).toBeNull();
    const refused = await openai()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: PROMPT_WORDS }] })
      .then(
        () => null,
        (error: unknown) => error,
      );
    expect(refused).toBeInstanceOf(OpenAI.APIError);
    expect((await stack.db.agent.findUniqueOrThrow({ where: { id: stack.agent.agentId } })).status).toBe("suspended");
    expect((await act("suspend_subject", "twice")).status).toBe(409);
    expect(await (await act("unsuspend_subject", "reinstated after review")).json()).toEqual({ id: flagId, action: "unsuspend_subject", status: "active" });
    expect((await stack.db.agent.findUniqueOrThrow({ where: { id: stack.agent.agentId } })).status).toBe("active");
    // Reinstated: the same agent process connects at its next try and serves again.
    await stack.waitForModel("gpt-4o-mini", 10_000);
    const served = await openai().chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: PROMPT_WORDS }] });
    expect(served.choices[0]!.message.content).toBeTruthy();

    const trail = await pool.query<{ action: string; actor: string; detail: { note: string } }>(
      "SELECT action, actor, detail FROM audit_events WHERE subject = $1 ORDER BY id",
      [`flag:${flagId}`],
    );
    expect(trail.rows.map((r) => [r.action, r.actor, r.detail.note])).toEqual([
      ["risk.approved", "admin-api", "checked with the owner"],
      ["risk.hold_earnings", "admin-api", "holding while the owner explains the made-up usage"],
      ["risk.release_earnings", "admin-api", "owner explained"],
      ["risk.suspend_subject", "admin-api", "suspended pending review"],
      ["risk.unsuspend_subject", "admin-api", "reinstated after review"],
    ]);
    expect((await new Ledger(pool).audit()).problems).toEqual([]);
  });

  it("a key suspended from a flag is refused at once with key_suspended, and serves again once reinstated", async () => {
    // No detector flags a key yet (self-dealing will): this flag is the action's input, not what is under test.
    const flag = await raiseRiskFlag(stack.db, { kind: "key_review", subject: `key:${stack.keyId}`, severity: 1, evidence: { keyId: stack.keyId } });
    const act = (action: string) =>
      adminFetch(stack.gateway.adminOrigin, `/admin/v1/risk-flags/${flag.id}/actions`, { method: "POST", body: { action, note: `${action} by review` } });
    const call = () => fetch(`${stack.baseUrl}/v1/models`, { headers: { authorization: `Bearer ${stack.apiKey}` } });
    expect((await call()).status).toBe(200);
    expect((await act("suspend_subject")).status).toBe(200);
    await waitFor(async () => (await call()).status === 403, 5_000);
    const refused = await openai()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: PROMPT_WORDS }] })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((refused as InstanceType<typeof OpenAI.PermissionDeniedError>).code).toBe("key_suspended");
    // Holding the key user's earnings: they have none (a buyer), so nothing is held.
    expect((await act("hold_earnings")).status).toBe(409);
    expect((await act("unsuspend_subject")).status).toBe(200);
    await waitFor(async () => (await call()).status === 200, 5_000);
  });
});
