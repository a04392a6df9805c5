import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { hashPrefix64, KeyFilter, KeyFilterLoader, MissBudget } from "./key_filter.ts";
import { createLogger } from "../log.ts";

const randomHash = () => randomBytes(32).toString("hex");
const silent = createLogger({}, "error", () => {});

describe("KeyFilter", () => {
  it("holds every key it was built from or told about, and refuses random ones", () => {
    const f = new KeyFilter();
    const built = Array.from({ length: 5_000 }, randomHash);
    const added = Array.from({ length: 50 }, randomHash);
    f.beginRebuild().install(BigUint64Array.from(built.map(hashPrefix64)));
    for (const h of added) f.add(hashPrefix64(h));
    expect(f.size).toBe(5_050);
    for (const h of [...built, ...added]) expect(f.has(hashPrefix64(h))).toBe(true);
    // 64-bit prefixes: a random key passes with probability 5,050 / 2^64.
    expect(Array.from({ length: 5_000 }, randomHash).filter((h) => f.has(hashPrefix64(h)))).toEqual([]);
    // The ends of the sorted array are found too.
    f.beginRebuild().install(BigUint64Array.from([0n, 2n ** 64n - 1n, 7n]));
    expect([f.has(0n), f.has(2n ** 64n - 1n), f.has(7n), f.has(6n), f.has(8n)]).toEqual([true, true, true, false, false]);
  });

  it("a rebuild keeps keys added while its query ran, and drops those its snapshot already has", () => {
    const f = new KeyFilter();
    f.add(1n); // before the rebuild: committed before the query, so in its snapshot (here: deliberately not)
    const build = f.beginRebuild();
    f.add(2n); // during the query: may have committed after the snapshot
    build.install(BigUint64Array.from([3n]));
    expect([f.has(1n), f.has(2n), f.has(3n)]).toEqual([false, true, true]);
    expect(f.size).toBe(2);
  });

  it("a cancelled rebuild changes nothing", () => {
    const f = new KeyFilter();
    f.beginRebuild().install(BigUint64Array.from([5n]));
    const build = f.beginRebuild();
    f.add(6n);
    build.cancel();
    expect([f.has(5n), f.has(6n)]).toEqual([true, true]);
  });
});

describe("MissBudget", () => {
  it("allows perSecond lookups at once, then refills at that rate, never above one second's worth", () => {
    const b = new MissBudget(4, 0);
    expect(Array.from({ length: 6 }, () => b.take(0))).toEqual([true, true, true, true, false, false]);
    expect(b.take(249)).toBe(false);
    expect(b.take(250)).toBe(true); // 0.25 s × 4/s = 1 token
    expect(b.take(250)).toBe(false);
    // A long idle stretch refills to 4, not more.
    expect(Array.from({ length: 6 }, () => b.take(60_000))).toEqual([true, true, true, true, false, false]);
  });

  it("says how many lookups it allows without spending them; a clock going back refills nothing", () => {
    const b = new MissBudget(4, 0);
    expect(b.available(0)).toBe(4);
    expect(b.available(0)).toBe(4);
    b.take(0);
    b.take(0);
    expect(b.available(0)).toBe(2);
    expect(b.available(-10_000)).toBe(2);
    expect(b.available(499)).toBe(3);
    expect(b.available(500)).toBe(4);
  });
});

describe("KeyFilterLoader", () => {
  it("runs one rebuild at a time and one more when asked meanwhile; a failed one keeps the filter", async () => {
    const f = new KeyFilter();
    let loads = 0;
    let release: (() => void) | null = null;
    let fail = false;
    const loader = new KeyFilterLoader(
      f,
      async () => {
        loads++;
        if (fail) throw new Error("database down");
        if (loads === 2) await new Promise<void>((r) => (release = r));
        return BigUint64Array.from([BigInt(loads)]);
      },
      silent,
      3_600_000,
    );
    await loader.start();
    expect(f.has(1n)).toBe(true);
    const first = loader.rebuild();
    const second = loader.rebuild(); // while the first waits: one more run afterwards
    const third = loader.rebuild();
    expect(loads).toBe(2);
    release!();
    await Promise.all([first, second, third]);
    expect(loads).toBe(3);
    expect([f.has(1n), f.has(2n), f.has(3n)]).toEqual([false, false, true]);
    fail = true;
    await expect(loader.rebuild()).rejects.toThrow("database down");
    expect(f.has(3n)).toBe(true);
    loader.close();
  });
});
