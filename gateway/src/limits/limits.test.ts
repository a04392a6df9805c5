/**
 * The limit rules, run against both stores: in-process (an injected clock) and Redis (the machine's Redis, a key
 * prefix of its own per run, time from Redis). Then the limiter as four gateways share one store.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { createLogger } from "../log.ts";
import { MemoryStore } from "./memory_store.ts";
import { RedisStore } from "./redis_store.ts";
import { connectRedis, redisAnswers, whenRedisReady } from "./redis.ts";
import type { PoolSpec } from "./pool.ts";
import type { PoolStore } from "./store.ts";
import { LimitRefusedError, Limiter, type KeyLimits, type LimiterOptions } from "./limiter.ts";

const log = createLogger({ proc: "test" }, "error");
const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `test:limits:${randomUUID()}:`;

let redis: Redis;
beforeAll(async () => {
  redis = connectRedis(REDIS_URL, log, 2_000);
  await whenRedisReady(redis, 5_000);
  await new RedisStore(redis).load();
});
afterAll(async () => {
  // Only this run's keys.
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

/** A clock the memory store reads; the Redis store reads Redis's own. */
let fakeNow = Date.UTC(2026, 11, 1, 12);
const clock = () => fakeNow;

const backends: { name: string; make(slotHoldMs?: number): PoolStore; advance(ms: number): Promise<void> }[] = [
  {
    name: "memory",
    make: (slotHoldMs) => new MemoryStore(clock, slotHoldMs),
    advance: (ms) => {
      fakeNow += ms;
      return Promise.resolve();
    },
  },
  {
    name: "redis",
    make: (slotHoldMs) => new RedisStore(redis, slotHoldMs),
    // Redis keeps its own time: wait for it (short intervals only).
    advance: (ms) => new Promise((r) => setTimeout(r, ms)),
  },
];

let n = 0;
const key = (tag: string, name: string) => `${prefix}{${tag}}:${name}:${++n}`;
const bucket = (k: string, capacity: number, refillPerMs: number, debt: boolean, init: number | null = capacity): PoolSpec => ({
  kind: "bucket",
  key: k,
  capacity,
  refillPerMs,
  debt,
  ttlMs: 60_000,
  init,
});
const slots = (k: string, capacity: number): PoolSpec => ({ kind: "slots", key: k, capacity, refillPerMs: 0, debt: false, ttlMs: 60_000, init: null });

for (const backend of backends) {
  describe(`pool rules (${backend.name} store)`, () => {
    it("a strict bucket admits its capacity, then refuses with the wait until one unit refills", async () => {
      const store = backend.make();
      const spec = bucket(key("k:a", "rpm"), 5, 5 / 60_000, false);
      for (let i = 0; i < 5; i++) expect(await store.take("gw1", [{ spec, amount: 1, want: 1 }])).toEqual({ ok: true, granted: [1] });
      const refused = await store.take("gw1", [{ spec, amount: 1, want: 1 }]);
      expect(refused.ok).toBe(false);
      if (refused.ok || refused.reason !== "refused") throw new Error("expected a refusal");
      expect(refused.retryAfterMs).toBeGreaterThan(11_000);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(12_000);
    });

    it("a bucket refills continuously", async () => {
      const store = backend.make();
      const spec = bucket(key("k:b", "rpm"), 2, 2 / 100, false); // 2 per 100 ms
      expect((await store.take("gw1", [{ spec, amount: 2, want: 2 }])).ok).toBe(true);
      expect((await store.take("gw1", [{ spec, amount: 1, want: 1 }])).ok).toBe(false);
      await backend.advance(120);
      expect((await store.take("gw1", [{ spec, amount: 2, want: 2 }])).ok).toBe(true);
    });

    it("a debt bucket admits while above zero, goes below it once, and settles by giving back", async () => {
      const store = backend.make();
      const spec = bucket(key("k:c", "tpm"), 100, 0, true);
      expect(await store.take("gw1", [{ spec, amount: 150, want: 150 }])).toEqual({ ok: true, granted: [150] });
      const refused = await store.take("gw1", [{ spec, amount: 1, want: 1 }]);
      expect(refused).toMatchObject({ ok: false, reason: "refused", retryAfterMs: null, level: -50 });
      await store.give("gw1", [{ spec, amount: 120 }]); // used 30 of the 150 estimated
      expect(await store.take("gw1", [{ spec, amount: 70, want: 70 }])).toEqual({ ok: true, granted: [70] });
      await store.give("gw1", [{ spec, amount: -10 }]); // used 80 of 70
      expect((await store.take("gw1", [{ spec, amount: 1, want: 1 }])).ok).toBe(false);
    });

    it("a bucket with no starting level asks for one (the budget's spend is PostgreSQL's)", async () => {
      const store = backend.make();
      const spec = bucket(key("k:d", "budget"), 1_000, 0, true, null);
      expect(await store.take("gw1", [{ spec, amount: 10, want: 10 }])).toEqual({ ok: false, reason: "missing", index: 0 });
      expect(await store.take("gw1", [{ spec: { ...spec, init: 995 }, amount: 10, want: 10 }])).toEqual({ ok: true, granted: [10] });
      // Started: the level is the store's now, whatever init a caller passes.
      expect((await store.take("gw1", [{ spec: { ...spec, init: 1_000 }, amount: 986, want: 986 }])).ok).toBe(true);
      expect((await store.take("gw1", [{ spec, amount: 1, want: 1 }])).ok).toBe(false);
    });

    it("slots are held per gateway and given back", async () => {
      const store = backend.make();
      const spec = slots(key("k:e", "conc"), 2);
      expect((await store.take("gw1", [{ spec, amount: 2, want: 2 }])).ok).toBe(true);
      expect(await store.take("gw2", [{ spec, amount: 1, want: 1 }])).toMatchObject({ ok: false, reason: "refused", retryAfterMs: null });
      await store.give("gw1", [{ spec, amount: 1 }]);
      expect((await store.take("gw2", [{ spec, amount: 1, want: 1 }])).ok).toBe(true);
      expect((await store.take("gw1", [{ spec, amount: 1, want: 1 }])).ok).toBe(false);
    });

    it("a gateway's slots come back when it stops renewing them (a crashed gateway)", async () => {
      const store = backend.make(150);
      const spec = slots(key("k:f", "conc"), 1);
      expect((await store.take("gw-dead", [{ spec, amount: 1, want: 1 }])).ok).toBe(true);
      const live = backend.name === "memory" ? store : backend.make(150);
      expect((await live.take("gw-live", [{ spec, amount: 1, want: 1 }])).ok).toBe(false);
      await backend.advance(100);
      await store.renew("gw-dead", [spec.key]);
      await backend.advance(100);
      expect((await live.take("gw-live", [{ spec, amount: 1, want: 1 }])).ok).toBe(false); // renewed: still held
      await backend.advance(200);
      expect((await live.take("gw-live", [{ spec, amount: 1, want: 1 }])).ok).toBe(true);
    });

    it("a slice is granted only when the pool has it to spare", async () => {
      const store = backend.make();
      const spec = bucket(key("k:g", "rpm"), 10, 0, false);
      expect(await store.take("gw1", [{ spec, amount: 1, want: 8 }])).toEqual({ ok: true, granted: [8] });
      expect(await store.take("gw1", [{ spec, amount: 1, want: 8 }])).toEqual({ ok: true, granted: [1] });
    });

    it("several pools of one owner are taken all or none", async () => {
      const store = backend.make();
      const rpm = bucket(key("k:h", "rpm"), 10, 0, false);
      const conc = slots(key("k:h", "conc"), 1);
      expect(
        (
          await store.take("gw1", [
            { spec: rpm, amount: 1, want: 1 },
            { spec: conc, amount: 1, want: 1 },
          ])
        ).ok,
      ).toBe(true);
      expect(
        await store.take("gw1", [
          { spec: rpm, amount: 1, want: 1 },
          { spec: conc, amount: 1, want: 1 },
        ]),
      ).toMatchObject({ ok: false, index: 1 });
      // The refused decision took nothing from the first pool: 9 left.
      expect((await store.take("gw1", [{ spec: rpm, amount: 9, want: 9 }])).ok).toBe(true);
    });
  });

  describe(`limiter across four gateways (${backend.name} store)`, () => {
    const limiters: Limiter[] = [];
    afterAll(async () => {
      for (const l of limiters) await l.close();
    });
    const makeLimiters = (store: PoolStore, extra: Partial<LimiterOptions> = {}) =>
      [1, 2, 3, 4].map((i) => {
        const l = new Limiter({
          gatewayId: `gw${i}`,
          shared: backend.name === "redis" ? store : null,
          prefix,
          userConcurrencyMax: 0,
          sliceFraction: 0.0025,
          sliceIdleMs: 500,
          redisRetryMs: 1_000,
          slotHoldMs: 30_000,
          liveGateways: () => Promise.resolve(4),
          monthSpendMicros: () => Promise.resolve(0n),
          ping: () => Promise.resolve(true),
          log,
          ...extra,
        });
        limiters.push(l);
        return l;
      });
    const noLimits: KeyLimits = { rpm: null, tpm: null, concurrency: null, monthlyBudgetMicros: null };

    it("a key sent at 5× its RPM from four gateways is admitted within max(1, 1%) of its limit", async () => {
      // The memory store is one process's: four limiters over one memory store stand for four gateways only
      // when they share it, which a real memory-store gateway never does; Redis is the case that matters.
      if (backend.name === "memory") return;
      const store = backend.make();
      const gws = makeLimiters(store);
      const rpm = 2_000;
      const keyId = `key_${randomUUID()}`;
      const t0 = Date.now();
      let allowed = 0;
      const tries = Array.from({ length: rpm * 5 }, (_, i) =>
        gws[i % 4]!.admitStart({ keyId, userId: "usr_x", key: { ...noLimits, rpm } }).then(
          (a) => {
            allowed++;
            a.end({ tokens: null, chargedMicros: null });
          },
          (e: unknown) => {
            if (!(e instanceof LimitRefusedError)) throw e;
          },
        ),
      );
      await Promise.all(tries);
      const elapsedMs = Date.now() - t0;
      // The bucket refilled while the burst ran: the limit over the run is capacity + refill.
      const limit = rpm + (rpm * elapsedMs) / 60_000;
      expect(Math.abs(allowed - limit)).toBeLessThanOrEqual(Math.max(1, 0.01 * rpm) + (rpm * elapsedMs) / 60_000);
      expect(allowed).toBeLessThanOrEqual(Math.ceil(limit));
      expect(allowed).toBeGreaterThanOrEqual(rpm - Math.max(1, 0.01 * rpm));
    });

    it("a key sent at 5× its TPM from four gateways is admitted within max(1, 1%) of its limit", async () => {
      if (backend.name === "memory") return; // as above: four gateways share only Redis
      const store = backend.make();
      const gws = makeLimiters(store);
      const tpm = 200_000;
      const perRequest = 100;
      const keyId = `key_${randomUUID()}`;
      const key: KeyLimits = { ...noLimits, tpm };
      const t0 = Date.now();
      let allowedTokens = 0;
      const tries = Array.from({ length: (5 * tpm) / perRequest }, async (_, i) => {
        const gw = gws[i % 4]!;
        const a = await gw.admitStart({ keyId, userId: "usr_t", key });
        try {
          await gw.admitBody(a, { keyId, key, estimatedTokens: perRequest, heldMicros: null, agentId: null, agent: null });
          allowedTokens += perRequest;
          a.end({ tokens: perRequest, chargedMicros: null });
        } catch (e) {
          a.end({ tokens: 0, chargedMicros: null });
          if (!(e instanceof LimitRefusedError)) throw e;
          expect(e.refusal.limit).toBe("key_tpm");
        }
      });
      await Promise.all(tries);
      const refill = (tpm * (Date.now() - t0)) / 60_000;
      const tolerance = Math.max(1, 0.01 * tpm);
      expect(allowedTokens).toBeLessThanOrEqual(tpm + refill + tolerance);
      expect(allowedTokens).toBeGreaterThanOrEqual(tpm - tolerance);
    });

    it("a key's concurrency holds across gateways, and ended requests free their slots", async () => {
      const store = backend.make();
      const gws = backend.name === "redis" ? makeLimiters(store) : makeLimiters(store).slice(0, 1);
      const keyId = `key_${randomUUID()}`;
      const key = { ...noLimits, concurrency: 10 };
      const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => gws[i % gws.length]!.admitStart({ keyId, userId: "usr_y", key })));
      const admitted = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
      expect(admitted).toHaveLength(10);
      for (const r of results) if (r.status === "rejected") expect((r.reason as LimitRefusedError).refusal.limit).toBe("key_concurrency");
      admitted[0]!.end({ tokens: null, chargedMicros: null });
      admitted[0]!.end({ tokens: null, chargedMicros: null }); // twice: counted once
      const again = await Promise.allSettled([0, 1].map((i) => gws[i % gws.length]!.admitStart({ keyId, userId: "usr_y", key })));
      expect(again.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    });

    it("an agent's expert limits hold whichever key sends to it, and a refusal gives back what the key took", async () => {
      const store = backend.make();
      const [gw] = makeLimiters(store);
      const agentId = `agt_${randomUUID()}`;
      const agent = { rpm: null, tpm: null, concurrency: 1 };
      const keyA = `key_${randomUUID()}`;
      const keyB = `key_${randomUUID()}`;
      const key = { ...noLimits, concurrency: 1 };
      const body = (keyId: string) => ({ keyId, key, estimatedTokens: 10, heldMicros: null, agentId, agent });
      const a = await gw!.admitStart({ keyId: keyA, userId: "usr_a", key });
      await gw!.admitBody(a, body(keyA));
      const b = await gw!.admitStart({ keyId: keyB, userId: "usr_b", key });
      await expect(gw!.admitBody(b, body(keyB))).rejects.toMatchObject({ refusal: { limit: "agent_concurrency" } });
      b.end({ tokens: 0, chargedMicros: 0n });
      a.end({ tokens: 10, chargedMicros: null });
      // Both keys' slots and the agent's are free again.
      await expect
        .poll(async () => {
          try {
            const again = await gw!.admitStart({ keyId: keyB, userId: "usr_b", key });
            await gw!.admitBody(again, body(keyB));
            again.end({ tokens: 0, chargedMicros: 0n });
            return "admitted";
          } catch (error) {
            return (error as LimitRefusedError).refusal.limit;
          }
        })
        .toBe("admitted");
    });

    it("a monthly budget starts from the month's spend and is exceeded by at most one request's hold", async () => {
      const store = backend.make();
      const spent = 9_000n;
      const [gw] = makeLimiters(store, { monthSpendMicros: () => Promise.resolve(spent) });
      const keyId = `key_${randomUUID()}`;
      const key = { ...noLimits, monthlyBudgetMicros: 10_000n };
      const body = (held: bigint) => ({ keyId, key, estimatedTokens: 10, heldMicros: held, agentId: null, agent: null });
      const a1 = await gw!.admitStart({ keyId, userId: "usr_z", key });
      await gw!.admitBody(a1, body(600n));
      const a2 = await gw!.admitStart({ keyId, userId: "usr_z", key });
      await gw!.admitBody(a2, body(600n)); // 1,000 − 600 = 400 left: admitted, may end below zero
      const a3 = await gw!.admitStart({ keyId, userId: "usr_z", key });
      // (a held amount above the gateway's local slice of the budget, 0.25% of it)
      await expect(gw!.admitBody(a3, body(100n))).rejects.toMatchObject({ refusal: { limit: "key_budget", retryAfterMs: null } });
      a3.end({ tokens: null, chargedMicros: null });
      // Both charged 100: 800 left.
      a1.end({ tokens: 10, chargedMicros: 100n });
      a2.end({ tokens: 10, chargedMicros: 100n });
      await expect
        .poll(async () => {
          const a = await gw!.admitStart({ keyId, userId: "usr_z", key });
          try {
            await gw!.admitBody(a, body(800n));
            return "admitted";
          } catch {
            a.end({ tokens: null, chargedMicros: null });
            return "refused";
          }
        })
        .toBe("admitted");
    });

    it("a deferred request's budget take is corrected to its charge when that is known, by any gateway", async () => {
      const store = backend.make();
      const gws = makeLimiters(store, { monthSpendMicros: () => Promise.resolve(9_000n) });
      const settling = backend.name === "redis" ? gws[1]! : gws[0]!;
      const keyId = `key_${randomUUID()}`;
      const key = { ...noLimits, monthlyBudgetMicros: 10_000n };
      const body = (held: bigint) => ({ keyId, key, estimatedTokens: 10, heldMicros: held, agentId: null, agent: null });
      const a = await gws[0]!.admitStart({ keyId, userId: "usr_d", key });
      await gws[0]!.admitBody(a, body(600n));
      const taken = a.budgetTaken();
      expect(taken).toMatchObject({ capacityMicros: 10_000, takenMicros: 600 });
      // The create call ends with its charge unknown: the budget keeps the hold (400 left); a request charged 500
      // takes the pool below zero, and the next is refused.
      a.end({ tokens: null, chargedMicros: null });
      const tryAdmit = async (held: bigint, charged: bigint) => {
        const b = await gws[0]!.admitStart({ keyId, userId: "usr_d", key });
        try {
          await gws[0]!.admitBody(b, body(held));
          b.end({ tokens: 10, chargedMicros: charged });
          return "admitted";
        } catch (error) {
          b.end({ tokens: null, chargedMicros: null });
          return (error as LimitRefusedError).refusal.limit;
        }
      };
      expect(await tryAdmit(500n, 500n)).toBe("admitted");
      await expect.poll(() => tryAdmit(100n, 0n)).toBe("key_budget");
      // Settled at 100: the pool gets 500 back (400 left), whichever gateway settles it.
      settling.refundBudget(taken!, 600 - 100);
      await expect.poll(() => tryAdmit(100n, 0n)).toBe("admitted");
    });
  });
}

/** A limiter that retries Redis every 20 ms, with `live` gateways alive, for the outage cases. */
function outageLimiter(gatewayId: string, shared: PoolStore, live: number, ping: () => Promise<boolean>): Limiter {
  return new Limiter({
    gatewayId,
    shared,
    prefix,
    userConcurrencyMax: 0,
    sliceFraction: 0,
    sliceIdleMs: 500,
    redisRetryMs: 20,
    slotHoldMs: 30_000,
    liveGateways: () => Promise.resolve(live),
    monthSpendMicros: () => Promise.resolve(0n),
    ping,
    log,
  });
}

describe("Redis unreachable", () => {
  it("counts each limit ÷ live gateways in memory, then goes back to Redis when it answers", async () => {
    let up = false;
    const failing: PoolStore = {
      kind: "redis",
      take: () => (up ? new RedisStore(redis).take("gwX", []) : Promise.reject(new Error("connect ECONNREFUSED"))),
      give: () => Promise.reject(new Error("connect ECONNREFUSED")),
      renew: () => Promise.reject(new Error("connect ECONNREFUSED")),
      close: () => Promise.resolve(),
    };
    const limiter = outageLimiter("gwX", failing, 4, () => Promise.resolve(up));
    limiter.start();
    const keyId = `key_${randomUUID()}`;
    const key: KeyLimits = { rpm: null, tpm: null, concurrency: 8, monthlyBudgetMicros: null };
    const first = await limiter.admitStart({ keyId, userId: "usr_q", key });
    expect(limiter.mode).toBe("local");
    // The divisor comes from PostgreSQL's view of live gateways (4): 8 ÷ 4 = 2 here.
    await expect
      .poll(async () => {
        const more = await Promise.allSettled([0, 1, 2].map(() => limiter.admitStart({ keyId, userId: "usr_q", key })));
        for (const r of more) if (r.status === "fulfilled") r.value.end({ tokens: null, chargedMicros: null });
        return more.filter((r) => r.status === "fulfilled").length;
      })
      .toBe(1);
    up = true;
    await expect.poll(() => limiter.mode).toBe("redis");
    first.end({ tokens: null, chargedMicros: null });
    await limiter.close();
  });

  it("one failed Redis decision is asked again, not taken for an outage; a lost Redis divides each limit by the last live count at once", async () => {
    const real = new RedisStore(redis);
    let failNext = 0;
    const flaky: PoolStore = {
      kind: "redis",
      take: (gatewayId, takes) => (failNext-- > 0 ? Promise.reject(new Error("Command timed out")) : real.take(gatewayId, takes)),
      give: (gatewayId, gives) => real.give(gatewayId, gives),
      renew: (gatewayId, keys) => real.renew(gatewayId, keys),
      close: () => Promise.resolve(),
    };
    let liveCalls = 0;
    const limiter = new Limiter({
      gatewayId: "gwF",
      shared: flaky,
      prefix,
      userConcurrencyMax: 0,
      sliceFraction: 0,
      sliceIdleMs: 500,
      redisRetryMs: 60_000,
      slotHoldMs: 30_000,
      liveGateways: () => {
        liveCalls++;
        // The count read while Redis answered is 4; later reads never arrive (a slow database).
        return liveCalls === 1 ? Promise.resolve(4) : new Promise<number>(() => {});
      },
      monthSpendMicros: () => Promise.resolve(0n),
      ping: () => Promise.resolve(false),
      log,
    });
    limiter.start();
    await expect.poll(() => liveCalls).toBe(1);
    const keyId = `key_${randomUUID()}`;
    const key: KeyLimits = { rpm: null, tpm: null, concurrency: 8, monthlyBudgetMicros: null };
    failNext = 1;
    const a = await limiter.admitStart({ keyId, userId: "usr_f", key });
    expect(limiter.mode).toBe("redis");
    a.end({ tokens: null, chargedMicros: null });
    // Two failures in a row: Redis is lost; each limit is 8 ÷ 4 = 2 at once, without waiting for a new count.
    failNext = 2;
    const held = await Promise.allSettled([0, 1, 2].map(() => limiter.admitStart({ keyId, userId: "usr_f", key })));
    expect(limiter.mode).toBe("local");
    expect(held.filter((r) => r.status === "fulfilled")).toHaveLength(2);
    for (const r of held) if (r.status === "fulfilled") r.value.end({ tokens: null, chargedMicros: null });
    await limiter.close();
  });

  it("a decision whose answer was lost after Redis ran it is not taken twice when asked again", async () => {
    const real = new RedisStore(redis);
    let loseNext = 0;
    const seen: (string | undefined)[] = [];
    const lossy: PoolStore = {
      kind: "redis",
      // Redis runs the command; its answer never reaches this process (a timeout while the event loop was busy).
      take: async (gatewayId, takes, decisionId) => {
        seen.push(decisionId);
        const out = await real.take(gatewayId, takes, decisionId);
        if (loseNext-- > 0) throw new Error("Command timed out");
        return out;
      },
      give: (gatewayId, gives) => real.give(gatewayId, gives),
      renew: (gatewayId, keys) => real.renew(gatewayId, keys),
      close: () => Promise.resolve(),
    };
    const limiter = outageLimiter("gwL", lossy, 1, () => Promise.resolve(true));
    limiter.start();
    const keyId = `key_${randomUUID()}`;
    const key: KeyLimits = { rpm: null, tpm: null, concurrency: 2, monthlyBudgetMicros: null };
    loseNext = 1;
    const a = await limiter.admitStart({ keyId, userId: "usr_l", key });
    expect(limiter.mode).toBe("redis");
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBeTypeOf("string");
    expect(seen[1]).toBe(seen[0]);
    // Two slots: the lost answer's retry took one, not two, so a second request fits and a third does not.
    const b = await limiter.admitStart({ keyId, userId: "usr_l", key });
    expect(seen[2]).not.toBe(seen[0]);
    await expect(limiter.admitStart({ keyId, userId: "usr_l", key })).rejects.toBeInstanceOf(LimitRefusedError);
    a.end({ tokens: null, chargedMicros: null });
    b.end({ tokens: null, chargedMicros: null });
    await limiter.close();
  });

  it("the machine's Redis answers (the other cases ran against it)", async () => {
    expect(await redisAnswers(redis)).toBe(true);
  });
});
