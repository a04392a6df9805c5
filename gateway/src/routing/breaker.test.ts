/** The circuit breaker's states, on an injected clock. */
import { describe, expect, it } from "vitest";
import { CircuitBreakers, type BreakerState } from "./breaker.ts";

function setup() {
  let now = 0;
  const breakers = new CircuitBreakers({ failuresToOpen: 3, failureWindowMs: 10_000, openMs: 5_000, probeTimeoutMs: 20_000 }, () => now);
  const moves: string[] = [];
  breakers.onChange((agentId, model, from: BreakerState, to: BreakerState) => moves.push(`${agentId}/${model}: ${from}→${to}`));
  return { breakers, moves, advance: (ms: number) => (now += ms) };
}

describe("CircuitBreakers", () => {
  it("opens after N failures within the window, per agent × model", () => {
    const { breakers, moves } = setup();
    breakers.failure("agt_1", "m");
    breakers.failure("agt_1", "m");
    breakers.failure("agt_1", "other");
    expect(breakers.state("agt_1", "m")).toBe("closed");
    breakers.failure("agt_1", "m");
    expect(breakers.state("agt_1", "m")).toBe("open");
    expect(breakers.state("agt_1", "other")).toBe("closed");
    expect(breakers.allows("agt_1", "m", true)).toBe(false);
    expect(moves).toEqual(["agt_1/m: closed→open"]);
  });

  it("forgets failures older than the window", () => {
    const { breakers, advance } = setup();
    breakers.failure("agt_1", "m");
    breakers.failure("agt_1", "m");
    advance(10_001);
    breakers.failure("agt_1", "m");
    expect(breakers.state("agt_1", "m")).toBe("closed");
  });

  it("a success clears the count", () => {
    const { breakers } = setup();
    breakers.failure("agt_1", "m");
    breakers.failure("agt_1", "m");
    breakers.success("agt_1", "m");
    breakers.failure("agt_1", "m");
    expect(breakers.state("agt_1", "m")).toBe("closed");
    expect(breakers.list()).toEqual([{ agentId: "agt_1", model: "m", state: "closed", recentFailures: 1, retryAtMs: null }]);
  });

  it("half-opens after the open time: one probe; its success closes, its failure reopens", () => {
    const { breakers, moves, advance } = setup();
    for (let i = 0; i < 3; i++) breakers.failure("agt_1", "m");
    advance(4_999);
    expect(breakers.allows("agt_1", "m", true)).toBe(false);
    advance(1);
    expect(breakers.state("agt_1", "m")).toBe("half_open");
    expect(breakers.allows("agt_1", "m", true)).toBe(true);
    expect(breakers.allows("agt_1", "m", true)).toBe(false);
    breakers.failure("agt_1", "m");
    expect(breakers.state("agt_1", "m")).toBe("open");
    advance(5_000);
    expect(breakers.allows("agt_1", "m", true)).toBe(true);
    breakers.success("agt_1", "m");
    expect(breakers.state("agt_1", "m")).toBe("closed");
    expect(breakers.list()).toEqual([]);
    expect(moves).toEqual([
      "agt_1/m: closed→open",
      "agt_1/m: open→half_open",
      "agt_1/m: half_open→open",
      "agt_1/m: open→half_open",
      "agt_1/m: half_open→closed",
    ]);
  });

  it("lets another probe through when the first never reports back", () => {
    const { breakers, advance } = setup();
    for (let i = 0; i < 3; i++) breakers.failure("agt_1", "m");
    advance(5_000);
    expect(breakers.allows("agt_1", "m", true)).toBe(true);
    advance(19_999);
    expect(breakers.allows("agt_1", "m", true)).toBe(false);
    advance(1);
    expect(breakers.allows("agt_1", "m", true)).toBe(true);
  });
});
