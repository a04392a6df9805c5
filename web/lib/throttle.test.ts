/**
 * The throttle's maths with an injected clock, and its counting in PostgreSQL: a streak slows down and then
 * forgets, a window limits and then reopens, and parallel attempts cannot all slip past one check.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../e2e/stack/harness.ts";

let database: TestDatabase;
let t: typeof import("./throttle.ts");

beforeAll(async () => {
  database = await createTestDatabase();
  process.env.DATABASE_URL = database.url;
  t = await import("./throttle.ts");
});

afterAll(async () => {
  await database?.drop();
});

const T0 = Date.parse("2026-12-01T00:00:00Z");
const at = (ms: number) => new Date(T0 + ms);

describe("the maths", () => {
  it("a streak is free for freeCount attempts, then doubles from delayMsBase up to delayMsMax", () => {
    const delays = Array.from({ length: 16 }, (_, n) => t.streakDelayMs(t.SIGNIN_PAIR, n));
    expect(delays.slice(0, 8)).toEqual([0, 0, 0, 1_000, 2_000, 4_000, 8_000, 16_000]);
    expect(delays[13]).toBe(15 * 60_000); // 1,024 s, capped at 15 minutes
    expect(Math.max(...Array.from({ length: 100 }, (_, n) => t.streakDelayMs(t.SIGNIN_ACCOUNT, n)))).toBe(30_000);
    expect(t.streakDelayMs(t.SIGNIN_ACCOUNT, 9)).toBe(0);
    expect(t.streakDelayMs(t.SIGNIN_ACCOUNT, 10)).toBe(1_000);
  });

  it("a streak's wait runs from its last attempt and the streak is forgotten after idleResetMs", () => {
    const c = { count: 5, windowStart: at(0), lastAt: at(10_000) };
    expect(t.waitMs(t.SIGNIN_PAIR, c, T0 + 10_000)).toBe(4_000);
    expect(t.waitMs(t.SIGNIN_PAIR, c, T0 + 13_000)).toBe(1_000);
    expect(t.waitMs(t.SIGNIN_PAIR, c, T0 + 14_000)).toBe(0);
    expect(t.liveCount(t.SIGNIN_PAIR, c, T0 + 10_000 + t.SIGNIN_PAIR.idleResetMs)).toBe(0);
    expect(t.counted(t.SIGNIN_PAIR, c, T0 + 10_000 + t.SIGNIN_PAIR.idleResetMs).count).toBe(1);
  });

  it("a window refuses at countMax until the window has passed, then starts again", () => {
    const full = { count: t.SIGNIN_ADDRESS.countMax, windowStart: at(0), lastAt: at(60_000) };
    expect(t.waitMs(t.SIGNIN_ADDRESS, full, T0 + 60_000)).toBe(t.SIGNIN_ADDRESS.windowMs - 60_000);
    expect(t.waitMs(t.SIGNIN_ADDRESS, { ...full, count: full.count - 1 }, T0 + 60_000)).toBe(0);
    expect(t.waitMs(t.SIGNIN_ADDRESS, full, T0 + t.SIGNIN_ADDRESS.windowMs)).toBe(0);
    expect(t.counted(t.SIGNIN_ADDRESS, full, T0 + t.SIGNIN_ADDRESS.windowMs)).toEqual({
      count: 1,
      windowStart: at(t.SIGNIN_ADDRESS.windowMs),
      lastAt: at(t.SIGNIN_ADDRESS.windowMs),
    });
  });
});

describe("counting in the database", () => {
  it("counts an attempt against every gate, or against none when one says wait", async () => {
    const pair = { key: "test:pair", policy: t.SIGNIN_PAIR };
    const addr = { key: "test:addr", policy: { kind: "window", countMax: 4, windowMs: 60_000 } as const };
    for (let i = 0; i < 3; i++) expect(await t.takeAttempt([pair, addr], at(i))).toEqual({ ok: true });
    // Three free attempts used: the fourth waits 1 s after the third, and counts nowhere.
    expect(await t.takeAttempt([pair, addr], at(500))).toEqual({ ok: false, waitMs: 502, key: "test:pair" });
    const rows = async () =>
      Object.fromEntries((await database.db.throttleCounter.findMany({ where: { key: { startsWith: "test:" } } })).map((r) => [r.key, r.count]));
    expect(await rows()).toEqual({ "test:pair": 3, "test:addr": 3 });
    expect(await t.takeAttempt([pair, addr], at(1_002))).toEqual({ ok: true });
    // The address window is full now (4): it is the longer wait.
    expect(await t.takeAttempt([pair, addr], at(10_000))).toEqual({ ok: false, waitMs: 50_000, key: "test:addr" });
    await t.refundAttempt(["test:addr"]);
    expect(await rows()).toEqual({ "test:pair": 4, "test:addr": 3 });
  });

  it("parallel attempts see each other: only the free ones pass", async () => {
    const gate = [{ key: "test:parallel", policy: t.SIGNIN_PAIR }];
    const results = await Promise.all(Array.from({ length: 12 }, () => t.takeAttempt(gate, at(0))));
    expect(results.filter((r) => r.ok)).toHaveLength(t.SIGNIN_PAIR.freeCount);
  });

  it("deletes counters untouched for the retention time", async () => {
    await t.takeAttempt([{ key: "test:old", policy: t.SIGNUP_ADDRESS }], at(0));
    await t.takeAttempt([{ key: "test:new", policy: t.SIGNUP_ADDRESS }], at(t.THROTTLE_RETENTION_MS + 1));
    expect(await database.db.throttleCounter.findUnique({ where: { key: "test:old" } })).toBeNull();
    expect(await database.db.throttleCounter.findUnique({ where: { key: "test:new" } })).not.toBeNull();
  });
});
