import { describe, expect, it } from "vitest";
import { gatewayProcessCount, workerContext, workerGatewayId } from "./cluster.ts";
import { parseEnv } from "./env.ts";

describe("GATEWAY_PROCESSES", () => {
  it("is a whole number from 1, or auto for one per core", () => {
    expect(gatewayProcessCount(parseEnv({}).GATEWAY_PROCESSES, 8)).toBe(1);
    expect(gatewayProcessCount(parseEnv({ GATEWAY_PROCESSES: "3" }).GATEWAY_PROCESSES, 8)).toBe(3);
    expect(gatewayProcessCount(parseEnv({ GATEWAY_PROCESSES: "auto" }).GATEWAY_PROCESSES, 8)).toBe(8);
    expect(gatewayProcessCount("auto", 0)).toBe(1);
    for (const bad of ["0", "two", "-1", "1.5", "1000"]) expect(() => parseEnv({ GATEWAY_PROCESSES: bad }), bad).toThrow(/GATEWAY_PROCESSES/);
  });

  it("PEER_PORT is a port", () => {
    expect(parseEnv({ PEER_PORT: "9100" }).PEER_PORT).toBe(9100);
    expect(() => parseEnv({ PEER_PORT: "70000" })).toThrow(/PEER_PORT/);
  });

  it("a worker's gateway id is the base and its slot, the same at each restart", () => {
    expect(workerGatewayId("gw_abc", 0)).toBe("gw_abc-0");
    expect(workerGatewayId("gw_abc", 11)).toBe("gw_abc-11");
  });

  it("a process the primary did not fork is no worker", () => {
    expect(workerContext()).toBeNull();
  });
});
