import { describe, expect, it } from "vitest";
import { Cached } from "./cached.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Cached", () => {
  it("serves an expired value at once while one reload runs behind it", async () => {
    let loads = 0;
    let release: (() => void) | null = null;
    const c = new Cached(async () => {
      loads++;
      if (loads > 1) await new Promise<void>((r) => (release = r));
      return loads;
    }, 10);
    expect(await c.get()).toBe(1);
    await sleep(20);
    // Expired: three callers get the old value without waiting; one reload starts.
    expect(await Promise.all([c.get(), c.get(), c.get()])).toEqual([1, 1, 1]);
    expect(loads).toBe(2);
    release!();
    await sleep(0);
    expect(await c.get()).toBe(2);
  });

  it("after invalidate, callers wait for a fresh value; a load begun before it is not kept", async () => {
    let version = 1;
    let gate: Promise<void> = Promise.resolve();
    const c = new Cached(async () => {
      const v = version;
      await gate;
      return v;
    }, 60_000);
    expect(await c.get()).toBe(1);
    let open!: () => void;
    gate = new Promise<void>((r) => (open = r));
    c.invalidate();
    const waiting = c.get(); // loads version 1 (gate closed)
    version = 2;
    c.invalidate(); // changed again while that load runs
    open();
    gate = Promise.resolve();
    expect(await waiting).toBe(2);
    expect(await c.get()).toBe(2);
  });
});
