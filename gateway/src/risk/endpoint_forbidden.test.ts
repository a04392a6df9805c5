/**
 * The hub's throttle on ENDPOINT_REPORT: a modified agent may send one per frame; the hub takes at most
 * ENDPOINT_REPORTS_PER_AGENT_MAX per agent per ENDPOINT_REPORT_WINDOW_MS (an injected clock, no sleeps).
 */
import { describe, expect, it } from "vitest";
import { ENDPOINT_REPORT_WINDOW_MS, ENDPOINT_REPORTS_PER_AGENT_MAX, EndpointReportThrottle } from "./endpoint_forbidden.ts";

describe("endpoint report throttle", () => {
  it("takes at most the named number per agent per window, says once that it drops, and counts agents apart", () => {
    let now = 5_000_000;
    const throttle = new EndpointReportThrottle(() => now);
    const taken = () => {
      let n = 0;
      let firstDrops = 0;
      for (let i = 0; i < 1_000; i++) {
        const a = throttle.admit("agt_flood");
        if (a.take) n++;
        else if (a.firstDropped) firstDrops++;
      }
      return { n, firstDrops };
    };
    // A flood of 1,000 reports in one instant: the named number is taken, one drop is logged.
    expect(taken()).toEqual({ n: ENDPOINT_REPORTS_PER_AGENT_MAX, firstDrops: 1 });
    // Another agent is not held by the first one's flood.
    expect(throttle.admit("agt_quiet")).toEqual({ take: true });
    // Still inside the window: nothing more.
    now += ENDPOINT_REPORT_WINDOW_MS - 1;
    expect(throttle.admit("agt_flood")).toEqual({ take: false, firstDropped: false });
    // The next window takes the named number again.
    now += 1;
    expect(taken()).toEqual({ n: ENDPOINT_REPORTS_PER_AGENT_MAX, firstDrops: 1 });
  });

  it("tracks a bounded number of agents: windows already over are forgotten first", () => {
    let now = 0;
    const throttle = new EndpointReportThrottle(() => now, { perAgentMax: 1, windowMs: 1_000, agentsTrackedMax: 3 });
    for (const id of ["a", "b", "c"]) expect(throttle.admit(id).take).toBe(true);
    expect(throttle.tracked).toBe(3);
    // Full, every window open: the oldest is forgotten to make room.
    expect(throttle.admit("d").take).toBe(true);
    expect(throttle.tracked).toBe(3);
    expect(throttle.admit("c").take).toBe(false);
    // Later, the windows over are forgotten before a new agent is tracked.
    now = 1_000;
    expect(throttle.admit("e").take).toBe(true);
    expect(throttle.tracked).toBe(1);
  });
});
