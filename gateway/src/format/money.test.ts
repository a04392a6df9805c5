import { describe, expect, it } from "vitest";
import { formatUsd } from "./money.ts";

describe("formatUsd", () => {
  it("shows whole cents with two decimals and finer amounts exactly", () => {
    expect(formatUsd(0n)).toBe("$0.00");
    expect(formatUsd(1n)).toBe("$0.000001");
    expect(formatUsd(10_000n)).toBe("$0.01");
    expect(formatUsd(2_500_000n)).toBe("$2.50");
    expect(formatUsd(4_999_877n)).toBe("$4.999877");
    expect(formatUsd(1_234_500_000n)).toBe("$1,234.50");
    expect(formatUsd(1_000_000_000_000n)).toBe("$1,000,000.00");
    expect(formatUsd(-120_000n)).toBe("−$0.12");
  });
});
