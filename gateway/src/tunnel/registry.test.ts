/** Routing: the discount lane's priority, then the least-loaded agent; never an agent without room. */
import { describe, expect, it } from "vitest";
import type { AgentConnection } from "./agent_connection.ts";
import { AgentRegistry } from "./registry.ts";

function agent(id: string, opts: { discountLane?: boolean; inFlight?: number; capacity?: number; routable?: boolean }): AgentConnection {
  return {
    agentId: id,
    discountLane: opts.discountLane ?? false,
    inFlight: opts.inFlight ?? 0,
    capacity: opts.capacity ?? 10,
    routable: opts.routable ?? true,
    inventory: { agentVersion: "t", models: [{ provider: "openai", model: "gpt-4o-mini", contextTokens: null }], keyFingerprints: [], concurrentStreamsMax: 10 },
  } as unknown as AgentConnection;
}

describe("AgentRegistry.pick", () => {
  it("prefers a discount-lane agent with room, even a busier one", () => {
    const r = new AgentRegistry();
    r.add(agent("agt_idle", { inFlight: 0 }));
    r.add(agent("agt_discount", { discountLane: true, inFlight: 8 }));
    expect(r.pick("openai", "gpt-4o-mini")?.agentId).toBe("agt_discount");
  });

  it("falls back to the least-loaded other agent when the discount lane is full or paused", () => {
    const r = new AgentRegistry();
    r.add(agent("agt_full_discount", { discountLane: true, inFlight: 10 }));
    r.add(agent("agt_paused_discount", { discountLane: true, routable: false }));
    r.add(agent("agt_busy", { inFlight: 6 }));
    r.add(agent("agt_light", { inFlight: 2 }));
    expect(r.pick("openai", "gpt-4o-mini")?.agentId).toBe("agt_light");
  });

  it("answers null when no agent serving the model has room", () => {
    const r = new AgentRegistry();
    r.add(agent("agt_full", { inFlight: 10 }));
    expect(r.pick("openai", "gpt-4o-mini")).toBeNull();
    expect(r.pick("anthropic", "claude-haiku-4-5")).toBeNull();
  });
});
