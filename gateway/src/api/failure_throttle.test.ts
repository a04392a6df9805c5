import { describe, expect, it } from "vitest";
import { FailureThrottle, throttleKey } from "./failure_throttle.ts";

const opts = { failuresMax: 3, windowMs: 60_000, blockMs: 30_000, addressesMax: 100 };

describe("FailureThrottle", () => {
  it("refuses an address for blockMs after failuresMax failures in the window, then lets it try again", () => {
    const t = new FailureThrottle(opts);
    expect(t.waitMs("10.0.0.1", 0)).toBe(0);
    expect([t.failed("10.0.0.1", 0), t.failed("10.0.0.1", 1_000)]).toEqual([1, 2]);
    expect(t.waitMs("10.0.0.1", 1_000)).toBe(0);
    expect(t.failed("10.0.0.1", 2_000)).toBe(3);
    expect(t.waitMs("10.0.0.1", 2_000)).toBe(30_000);
    expect(t.waitMs("10.0.0.1", 31_999)).toBe(1);
    // Other addresses are not affected.
    expect(t.waitMs("10.0.0.2", 2_000)).toBe(0);
    // After the block: a fresh window.
    expect(t.waitMs("10.0.0.1", 32_000)).toBe(0);
    expect(t.failed("10.0.0.1", 62_000)).toBe(1);
  });

  it("failures spread wider than the window do not add up; a success clears the count", () => {
    const t = new FailureThrottle(opts);
    t.failed("10.0.0.1", 0);
    t.failed("10.0.0.1", 30_000);
    expect(t.failed("10.0.0.1", 60_000)).toBe(1); // the window that began at 0 is over
    t.failed("10.0.0.1", 60_001);
    t.succeeded("10.0.0.1");
    expect(t.failed("10.0.0.1", 60_002)).toBe(1);
  });

  it("tracks at most addressesMax addresses: expired ones go first, then the oldest", () => {
    const t = new FailureThrottle({ ...opts, blockMs: 120_000, addressesMax: 2 });
    for (let i = 0; i < 3; i++) t.failed("10.0.0.1", 0);
    t.failed("10.0.0.2", 0);
    t.failed("10.0.0.3", 1); // full: nothing expired, the oldest (10.0.0.1) goes
    expect(t.waitMs("10.0.0.1", 1)).toBe(0);
    for (let i = 0; i < 3; i++) t.failed("10.0.0.3", 2);
    t.failed("10.0.0.4", 60_001); // 10.0.0.2's window has passed: it goes, the blocked one stays
    expect(t.waitMs("10.0.0.3", 60_001)).toBe(60_001);
    expect(t.waitMs("10.0.0.4", 60_001)).toBe(0);
  });

  it("counts IPv4-mapped addresses as IPv4 and IPv6 addresses per /64", () => {
    expect(throttleKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(throttleKey("192.0.2.7")).toBe("192.0.2.7");
    expect(throttleKey("2001:db8:0:1::5")).toBe("2001:db8:0:1::/64");
    expect(throttleKey("2001:DB8:0000:0001:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:0:1::/64");
    expect(throttleKey("::1")).toBe("0:0:0:0::/64");
    const t = new FailureThrottle(opts);
    for (let i = 0; i < 3; i++) t.failed(`2001:db8:0:1::${i + 1}`, 0);
    expect(t.waitMs("2001:db8:0:1:ffff::9", 0)).toBe(30_000);
    expect(t.waitMs("2001:db8:0:2::1", 0)).toBe(0);
  });
});
