/** Routing: the discount lane's priority, then the least-loaded agent; never an agent without room. */
import { describe, expect, it } from "vitest";
import type { AgentConnection } from "./agent_connection.ts";
import { AgentRegistry } from "./registry.ts";

/** Registers a fake connection with its profile (as the gateway does when an agent is admitted). */
function add(r: AgentRegistry, conn: { agentId: string; discountLane: boolean; status: "active" | "paused" }): void {
  r.add(conn as unknown as AgentConnection);
  r.setProfile({ id: conn.agentId, ownerId: "usr_owner", status: conn.status, tier: "A", discountLane: conn.discountLane });
}

function agent(id: string, opts: { discountLane?: boolean; inFlight?: number; capacity?: number; routable?: boolean; paused?: boolean }) {
  return {
    agentId: id,
    discountLane: opts.discountLane ?? false,
    status: opts.paused ? ("paused" as const) : ("active" as const),
    inFlight: opts.inFlight ?? 0,
    capacity: opts.capacity ?? 10,
    routable: opts.routable ?? true,
    inventory: {
      agentVersion: "t",
      models: [{ provider: "openai", model: "gpt-4o-mini", contextTokens: null }],
      keyFingerprints: [],
      concurrentStreamsMax: 10,
    },
  };
}

describe("AgentRegistry.pick", () => {
  it("prefers a discount-lane agent with room, even a busier one", () => {
    const r = new AgentRegistry();
    add(r, agent("agt_idle", { inFlight: 0 }));
    add(r, agent("agt_discount", { discountLane: true, inFlight: 8 }));
    expect(r.pick("openai", "gpt-4o-mini")?.agentId).toBe("agt_discount");
  });

  it("falls back to the least-loaded other agent when the discount lane is full or paused", () => {
    const r = new AgentRegistry();
    add(r, agent("agt_full_discount", { discountLane: true, inFlight: 10 }));
    add(r, agent("agt_paused_discount", { discountLane: true, paused: true }));
    add(r, agent("agt_busy", { inFlight: 6 }));
    add(r, agent("agt_light", { inFlight: 2 }));
    expect(r.pick("openai", "gpt-4o-mini")?.agentId).toBe("agt_light");
  });

  it("answers null when no agent serving the model has room", () => {
    const r = new AgentRegistry();
    add(r, agent("agt_full", { inFlight: 10 }));
    expect(r.pick("openai", "gpt-4o-mini")).toBeNull();
    expect(r.pick("anthropic", "claude-haiku-4-5")).toBeNull();
  });
});
