/** The routing policy: classes (discount lane, tier), weighted spreading, restrictions, context windows, breakers. */
import { describe, expect, it } from "vitest";
import type { AgentConnection } from "../tunnel/agent_connection.ts";
import { AgentRegistry, type Tier } from "../tunnel/registry.ts";
import { CircuitBreakers } from "./breaker.ts";
import { NO_RESTRICTION, RoutingPolicy, type RemoteCandidates, type RouteRequest } from "./policy.ts";
import { AgentScores } from "./scores.ts";

interface FakeAgent {
  id: string;
  discountLane?: boolean;
  tier?: Tier;
  ownerId?: string;
  inFlight?: number;
  capacity?: number;
  routable?: boolean;
  paused?: boolean;
  contextTokens?: number | null;
  /** The agent reported its own rate limit has no room for this long (RATE_STATE). */
  saturatedForMs?: number;
  /** When it was enrolled (probation counts from here), ms on the test clock. */
  createdAtMs?: number;
}

function setup(agents: FakeAgent[], random: () => number = Math.random, remote?: RemoteCandidates, probationMs = 0) {
  const registry = new AgentRegistry();
  for (const a of agents) {
    const conn = {
      agentId: a.id,
      inFlight: a.inFlight ?? 0,
      capacity: a.capacity ?? 10,
      routable: a.routable ?? true,
      isClosed: false,
      rateSaturatedUntilMs: a.saturatedForMs ? Date.now() + a.saturatedForMs : 0,
      inventory: {
        agentVersion: "t",
        models: [{ provider: "openai", model: "gpt-4o-mini", contextTokens: a.contextTokens ?? null }],
        keyFingerprints: [],
        concurrentStreamsMax: 10,
      },
    };
    registry.add(conn as unknown as AgentConnection);
    registry.setProfile({
      id: a.id,
      ownerId: a.ownerId ?? "usr_owner",
      status: a.paused ? "paused" : "active",
      tier: a.tier ?? "A",
      discountLane: a.discountLane ?? false,
      ...(a.createdAtMs !== undefined ? { createdAt: new Date(a.createdAtMs) } : {}),
    });
  }
  let now = 1_000_000;
  const breakers = new CircuitBreakers({ failuresToOpen: 3, failureWindowMs: 10_000, openMs: 5_000, probeTimeoutMs: 20_000 }, () => now);
  const scores = new AgentScores();
  const policy = new RoutingPolicy(registry, breakers, scores, undefined, random, remote, { ms: probationMs, now: () => now });
  return { policy, breakers, scores, advance: (ms: number) => (now += ms) };
}

const req = (over: Partial<RouteRequest> = {}): RouteRequest => ({
  api: "openai",
  model: "gpt-4o-mini",
  contextTokensNeeded: null,
  restriction: NO_RESTRICTION,
  exclude: new Set(),
  ...over,
});

function order(policy: RoutingPolicy, r: RouteRequest = req()): string[] {
  const plan = policy.plan(r);
  if (!plan.ok) throw new Error(plan.reason);
  return plan.candidates.map((c) => c.agentId);
}

describe("RoutingPolicy.plan", () => {
  it("puts the discount lane first, then tier S before tier A, whatever the load", () => {
    const { policy } = setup([
      { id: "agt_a", tier: "A" },
      { id: "agt_s", tier: "S", inFlight: 8 },
      { id: "agt_lane", discountLane: true, inFlight: 9 },
    ]);
    expect(order(policy)).toEqual(["agt_lane", "agt_s", "agt_a"]);
  });

  it("tries an agent whose own rate limit has no room (RATE_STATE) after every other, whatever its class", () => {
    const { policy } = setup([
      { id: "agt_lane_saturated", discountLane: true, saturatedForMs: 5_000 },
      { id: "agt_s_saturated", tier: "S", saturatedForMs: 5_000 },
      { id: "agt_a", tier: "A", inFlight: 9 },
      { id: "agt_s_past", tier: "S", saturatedForMs: -1 },
    ]);
    const o = order(policy);
    expect(o.slice(0, 2)).toEqual(["agt_s_past", "agt_a"]);
    expect(o.slice(2).sort()).toEqual(["agt_lane_saturated", "agt_s_saturated"]);
  });

  it("skips agents without room, paused, not routable, or already tried", () => {
    const { policy } = setup([
      { id: "agt_full", inFlight: 10 },
      { id: "agt_paused", paused: true },
      { id: "agt_closing", routable: false },
      { id: "agt_tried" },
      { id: "agt_ok" },
    ]);
    expect(order(policy, req({ exclude: new Set(["agt_tried"]) }))).toEqual(["agt_ok"]);
  });

  it("says why there is no candidate", () => {
    const { policy } = setup([{ id: "agt_full", inFlight: 10, contextTokens: 8_000, ownerId: "usr_a" }]);
    expect(policy.plan(req({ model: "gpt-4o" }))).toEqual({ ok: false, reason: "not_served" });
    expect(policy.plan(req({ contextTokensNeeded: 9_000 }))).toEqual({ ok: false, reason: "context_too_long" });
    expect(policy.plan(req({ restriction: { ownerIds: ["usr_b"], minTier: null } }))).toEqual({ ok: false, reason: "restricted" });
    expect(policy.plan(req())).toEqual({ ok: false, reason: "unavailable" });
  });

  it("sends an over-long request only to an agent whose window holds it; unknown windows are tried", () => {
    const { policy } = setup([
      { id: "agt_small", contextTokens: 8_000, discountLane: true },
      { id: "agt_big", contextTokens: 200_000 },
      { id: "agt_unknown", contextTokens: null, tier: "S" },
    ]);
    expect(order(policy, req({ contextTokensNeeded: 50_000 }))).toEqual(["agt_unknown", "agt_big"]);
    expect(order(policy, req({ contextTokensNeeded: 1_000 }))[0]).toBe("agt_small");
  });

  it("honours a key's owner allowlist and minimum tier", () => {
    const { policy } = setup([
      { id: "agt_a_owner1", ownerId: "usr_1", tier: "A" },
      { id: "agt_s_owner1", ownerId: "usr_1", tier: "S" },
      { id: "agt_s_owner2", ownerId: "usr_2", tier: "S", discountLane: true },
    ]);
    expect(order(policy, req({ restriction: { ownerIds: ["usr_1"], minTier: null } }))).toEqual(["agt_s_owner1", "agt_a_owner1"]);
    expect(order(policy, req({ restriction: { ownerIds: [], minTier: "S" } }))).toEqual(["agt_s_owner2", "agt_s_owner1"]);
  });

  it("spreads traffic by weight within a class: the idle, fast agent gets most but not all", () => {
    let seed = 42;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const { policy, scores } = setup([{ id: "agt_fast" }, { id: "agt_slow" }], random);
    for (let i = 0; i < 20; i++) {
      scores.success("agt_fast", "gpt-4o-mini", 100);
      scores.success("agt_slow", "gpt-4o-mini", 6_000);
    }
    const firsts = new Map<string, number>();
    for (let i = 0; i < 2_000; i++) {
      const first = order(policy)[0]!;
      firsts.set(first, (firsts.get(first) ?? 0) + 1);
    }
    // Weights ~0.95 and 0.25: the fast agent first ~79% of the time.
    expect(firsts.get("agt_fast")).toBeGreaterThan(1_400);
    expect(firsts.get("agt_slow")).toBeGreaterThan(200);
  });

  it("leaves out an agent whose breaker is open for the model, and lets one probe through after the open time", () => {
    const { policy, breakers, advance } = setup([{ id: "agt_bad", tier: "S" }, { id: "agt_good" }]);
    for (let i = 0; i < 3; i++) breakers.failure("agt_bad", "gpt-4o-mini");
    expect(breakers.state("agt_bad", "gpt-4o-mini")).toBe("open");
    expect(order(policy)).toEqual(["agt_good"]);
    advance(5_000);
    const plan = policy.plan(req());
    expect(plan.ok && plan.candidates.map((c) => c.agentId)).toEqual(["agt_bad", "agt_good"]);
    if (!plan.ok) return;
    // The first request claims the probe; a second one, meanwhile, goes elsewhere.
    expect(policy.claim(plan.candidates, "gpt-4o-mini", new Set())?.agentId).toBe("agt_bad");
    expect(policy.claim(plan.candidates, "gpt-4o-mini", new Set())?.agentId).toBe("agt_good");
  });

  it("offers agents on other gateways by the same policy: class first, restrictions, pinning, and the windows their holders wrote", () => {
    const remoteAgent = (id: string, tier: Tier, routable = true, contextTokens: number | null = null) => ({
      contextTokens: (_api: string, model: string) => (model === "gpt-4o-mini" ? contextTokens : null),
      agentId: id,
      remote: true,
      routable,
      isClosed: false,
      capacity: 10,
      inFlight: 0,
      rateSaturatedUntilMs: 0,
      profile: { ownerId: "usr_far", status: "active" as const, tier, discountLane: false, limits: null },
      openStream: () => {
        throw new Error("not in this test");
      },
      sendSettlement: () => undefined,
    });
    const far = [remoteAgent("agt_far_s", "S"), remoteAgent("agt_far_down", "S", false), remoteAgent("agt_far_small", "S", true, 2_000)];
    const { policy } = setup([{ id: "agt_here", tier: "A", contextTokens: 1_000 }], Math.random, {
      serving: (_api, model) => (model === "gpt-4o-mini" ? far : []),
    });
    // Tier S on the other gateway before tier A here; a remote agent whose gateway link is down is skipped.
    expect(order(policy).slice(0, 2).sort()).toEqual(["agt_far_s", "agt_far_small"]);
    expect(order(policy)[2]).toBe("agt_here");
    // A remote agent's reported window counts as a local one's; an unknown one is tried.
    expect(order(policy, req({ contextTokensNeeded: 5_000 }))).toEqual(["agt_far_s"]);
    expect(order(policy, req({ contextTokensNeeded: 1_500 })).sort()).toEqual(["agt_far_s", "agt_far_small"]);
    expect(order(policy, req({ restriction: { ownerIds: ["usr_owner"], minTier: null } }))).toEqual(["agt_here"]);
    expect(order(policy, req({ pinnedAgentId: "agt_far_s" }))).toEqual(["agt_far_s"]);
    expect(policy.plan(req({ pinnedAgentId: "agt_gone" }))).toEqual({ ok: false, reason: "pinned_gone" });
  });
});

describe("probation", () => {
  it("an agent enrolled within the probation period gets a bounded share of a class, and an even one once it ends", () => {
    const HOUR = 3_600_000;
    // A seeded generator: the same draws on every run.
    let seed = 42;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const { policy, advance } = setup(
      [
        { id: "agt_old", createdAtMs: 1_000_000 - 1_000 * HOUR },
        { id: "agt_new", createdAtMs: 1_000_000 - HOUR },
      ],
      random,
      undefined,
      72 * HOUR,
    );
    const newShare = () => {
      let first = 0;
      for (let i = 0; i < 10_000; i++) {
        const plan = policy.plan(req());
        if (plan.ok && plan.candidates[0]!.agentId === "agt_new") first++;
      }
      return first / 10_000;
    };
    // Weight × AGENT_PROBATION_WEIGHT_FACTOR (0.1) against an equal peer: 0.1 / 1.1 ≈ 9 %.
    const during = newShare();
    expect(during).toBeGreaterThan(0.07);
    expect(during).toBeLessThan(0.11);
    advance(71 * HOUR + 1); // 72 h after its enrollment
    const after = newShare();
    expect(after).toBeGreaterThan(0.45);
    expect(after).toBeLessThan(0.55);
  });
});
