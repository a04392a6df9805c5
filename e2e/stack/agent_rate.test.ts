/**
 * The agent's own token bucket, through real processes (gateway, Deno agent, the mock provider answering 429
 * above its RPM with the providers' headers): in expert mode the owner's limit, pushed over the tunnel when the
 * owner changes it, is never exceeded at the provider even when the hub lets more through; in auto mode the agent
 * learns the provider's limits (requests and tokens) and settles near them with few 429s. Refusals reach the user as 429 in the route's
 * shape with a retry time.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setOwnAgentRate } from "@wellspring/gateway";
import { startStack, waitFor, type Stack } from "./harness.ts";

/** The provider key's limit, requests per minute. */
const PROVIDER_RPM = 120;
/** How long each mode is driven, ms (the provider's limit is per minute: a shorter run measures a rate). */
const RUN_MS = Number(process.env.AGENT_RATE_RUN_MS ?? 40_000);
/** The part of the auto run that is the agent learning, ms; the rest is measured. */
const SETTLE_MS = 10_000;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ mockOptions: { rpmLimit: PROVIDER_RPM } });
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

interface Outcome {
  at: number;
  status: number;
  code: string | null;
  retryAfter: string | null;
}

/** Sends `rpm` chat requests per minute for `ms` without waiting for answers (a steady demand), and collects them. */
async function drive(rpm: number, ms: number): Promise<Outcome[]> {
  const outcomes: Promise<Outcome>[] = [];
  const start = Date.now();
  const gapMs = 60_000 / rpm;
  for (let i = 0; Date.now() - start < ms; i++) {
    const at = Date.now();
    outcomes.push(
      fetch(`${stack.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", max_tokens: 5, messages: [{ role: "user", content: `call ${i}` }] }),
      }).then(async (res) => {
        const body = (await res.json()) as { error?: { code?: string } };
        return { at, status: res.status, code: body.error?.code ?? null, retryAfter: res.headers.get("retry-after") };
      }),
    );
    await new Promise((r) => setTimeout(r, Math.max(0, start + (i + 1) * gapMs - Date.now())));
  }
  return Promise.all(outcomes);
}

/** The provider's view: chat POSTs it received from `fromMs` (epoch) on. */
function providerCalls(fromMs: number, toMs = Infinity) {
  return stack.mock.requests.filter((r) => r.method === "POST" && r.path.startsWith("/v1/chat/completions") && r.startedAt >= fromMs && r.startedAt < toMs);
}

describe("the agent's own rate limits", () => {
  it("expert mode: the owner's RPM reaches the live agent, which never sends more to the provider, whatever the hub admits", async () => {
    const ownerRpm = 30;
    expect(
      await setOwnAgentRate(stack.db, stack.ownerId, stack.agent.agentId, { rateMode: "expert", rpmLimit: ownerRpm, tpmLimit: null, concurrencyLimit: null }),
    ).toBe(true);
    // CONFIG went to the agent and its RATE_STATE came back (the hub keeps what it reported on the agent's row).
    await waitFor(async () => (await stack.db.agent.findUniqueOrThrow({ where: { id: stack.agent.agentId } })).reportedRpm === ownerRpm, 10_000);
    const from = Date.now();
    const outcomes = await drive(4 * ownerRpm, Math.min(RUN_MS, 30_000));
    const calls = providerCalls(from);
    // The hub's own bucket admits the limit plus its refill over the run; the agent's window admits the limit.
    expect(calls.length).toBeLessThanOrEqual(ownerRpm);
    expect(calls.length).toBeGreaterThanOrEqual(ownerRpm - 1);
    expect(calls.every((c) => c.status === 200)).toBe(true);
    // Every request was served or refused with 429: an agent at its own limit is healthy (no breaker opens, no 503).
    expect(outcomes.filter((o) => o.status !== 200 && o.status !== 429)).toEqual([]);
    const refused = outcomes.filter((o) => o.status === 429);
    expect(outcomes.filter((o) => o.status === 200).length).toBe(calls.length);
    expect(refused.length).toBe(outcomes.length - calls.length);
    expect(refused.every((o) => o.code === "rate_limited" && Number(o.retryAfter) >= 1)).toBe(true);
  }, 90_000);

  it("auto mode: the agent learns the provider's RPM, settles near it within seconds and meets < 5% 429s after", async () => {
    expect(await setOwnAgentRate(stack.db, stack.ownerId, stack.agent.agentId, { rateMode: "auto" })).toBe(true);
    // In auto mode the agent reports what it learnt: the provider's limit, from its headers.
    const from = Date.now();
    const outcomes = await drive(4 * PROVIDER_RPM, RUN_MS);
    const settled = providerCalls(from + SETTLE_MS, from + RUN_MS);
    const limited = settled.filter((c) => c.status === 429).length;
    const served = settled.filter((c) => c.status === 200).length;
    const perMinute = (served * 60_000) / (RUN_MS - SETTLE_MS);
    console.log(
      `auto mode: ${providerCalls(from).length} provider calls; after ${SETTLE_MS} ms: ${served} served (${perMinute.toFixed(1)}/min at a ${PROVIDER_RPM} RPM key), ${limited} answered 429; ${outcomes.length} user requests`,
    );
    expect(limited / Math.max(1, settled.length)).toBeLessThan(0.05);
    expect(perMinute).toBeGreaterThan(0.8 * PROVIDER_RPM);
    expect(perMinute).toBeLessThanOrEqual(1.05 * PROVIDER_RPM);
    const agent = await stack.db.agent.findUniqueOrThrow({ where: { id: stack.agent.agentId } });
    expect(agent.reportedRpm).toBeGreaterThan(0.9 * PROVIDER_RPM);
    expect(agent.reportedRpm).toBeLessThanOrEqual(PROVIDER_RPM);
    // What the agent refused reached users as 429 in OpenAI's shape, with a retry time.
    const refused = outcomes.filter((o) => o.status === 429);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((o) => o.code === "rate_limited" && o.retryAfter !== null)).toBe(true);
  }, 120_000);
});

/** The second provider key's limit, tokens per minute (each call below counts ~125: a ~100-byte body and max_tokens 100). */
const PROVIDER_TPM = 3_000;

describe("the agent's own token pacing", () => {
  let tpmStack: Stack;
  beforeAll(async () => {
    tpmStack = await startStack({ mockOptions: { tpmLimit: PROVIDER_TPM } });
  }, 120_000);
  afterAll(async () => {
    await tpmStack?.close();
  });

  it("auto mode: the agent learns the provider's TPM from its headers, paces tokens near it and meets < 5% 429s", async () => {
    const runMs = Math.min(RUN_MS, 20_000);
    const settleMs = 5_000;
    const from = Date.now();
    const outcomes: Promise<number>[] = [];
    // ~17× what the key allows: ~125 tokens a call, 400 calls a minute (the bucket's first 3,000 tokens are spent in ~4 s).
    for (let i = 0; Date.now() - from < runMs; i++) {
      outcomes.push(
        fetch(`${tpmStack.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${tpmStack.apiKey}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "gpt-4o-mini", max_tokens: 100, messages: [{ role: "user", content: `call ${i} ${"x".repeat(40)}` }] }),
        }).then(async (res) => {
          await res.arrayBuffer();
          return res.status;
        }),
      );
      await new Promise((r) => setTimeout(r, Math.max(0, from + (i + 1) * 150 - Date.now())));
    }
    const statuses = await Promise.all(outcomes);
    const calls = tpmStack.mock.requests.filter((r) => r.method === "POST" && r.startedAt >= from + settleMs);
    const limited = calls.filter((c) => c.status === 429).length;
    const served = calls.filter((c) => c.status === 200).length;
    console.log(`auto TPM: ${statuses.length} user requests, after ${settleMs} ms ${served} provider calls served, ${limited} answered 429`);
    expect(limited / Math.max(1, calls.length)).toBeLessThan(0.05);
    // The agent reported the provider's TPM (at AUTO_CEILING_SHARE) to the hub, and refused what did not fit.
    const agent = await tpmStack.db.agent.findUniqueOrThrow({ where: { id: tpmStack.agent.agentId } });
    expect(agent.reportedTpm).toBe(Math.floor(PROVIDER_TPM * 0.98));
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    // Served at the key's rate once its first minute's bucket is spent: ~24 calls a minute (50 tokens a second).
    const perMinute = (served * 60_000) / (runMs - settleMs);
    expect(perMinute).toBeGreaterThan(0.5 * (PROVIDER_TPM / 125));
    expect(perMinute).toBeLessThan(1.5 * (PROVIDER_TPM / 125));
  }, 120_000);
});
