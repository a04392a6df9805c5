import { describe, expect, it } from "vitest";
import { formatRate, formatUsd, parseUsd } from "./money.ts";

describe("money as text", () => {
  it("shows whole cents with two decimals and finer amounts exactly", () => {
    expect(formatUsd(0n)).toBe("$0.00");
    expect(formatUsd(1n)).toBe("$0.000001");
    expect(formatUsd(435n)).toBe("$0.000435");
    expect(formatUsd(10_000n)).toBe("$0.01");
    expect(formatUsd(2_500_000n)).toBe("$2.50");
    expect(formatUsd(2_500_123n)).toBe("$2.500123");
    expect(formatUsd(4_999_877n)).toBe("$4.999877");
    expect(formatUsd(1_234_500_000n)).toBe("$1,234.50");
    expect(formatUsd(1_000_000_000_000n)).toBe("$1,000,000.00");
    expect(formatUsd(-120_000n)).toBe("−$0.12");
  });

  it("writes prices with two to six decimals and reads typed amounts to the micro-dollar", () => {
    expect(formatRate(75_000n)).toBe("0.075");
    expect(formatRate(10_000_000n)).toBe("10.00");
    expect(parseUsd("12.50")).toBe(12_500_000n);
    expect(parseUsd("$0.000001")).toBe(1n);
    expect(parseUsd("0.0000001")).toBeNull();
    expect(parseUsd("1e3")).toBeNull();
  });
});
