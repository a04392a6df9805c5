/**
 * `npm run bench:limits`: what a limiter decision costs on the request path (admitStart + admitBody + end for a
 * key with RPM, TPM and concurrency limits, one request at a time), p50/p99 in µs:
 * - no limits set (what S1's key pays);
 * - in-process store (no REDIS_URL);
 * - Redis, with local slices (the default), and without (a Redis round trip per decision: LIMITS_SLICE_FRACTION=0).
 * Redis is REDIS_URL or the machine's (127.0.0.1:6379), under a prefix of this run's own, deleted afterwards.
 */
import { randomUUID } from "node:crypto";
import { createLogger } from "../gateway/src/log.ts";
import { Limiter, type KeyLimits } from "../gateway/src/limits/limiter.ts";
import { RedisStore } from "../gateway/src/limits/redis_store.ts";
import { connectRedis, whenRedisReady } from "../gateway/src/limits/redis.ts";
import type { PoolStore } from "../gateway/src/limits/store.ts";

const DECISIONS = Number(process.env.BENCH_LIMIT_DECISIONS ?? 20_000);
const log = createLogger({ proc: "bench" }, "error");
const prefix = `bench:limits:${randomUUID()}:`;
const redis = connectRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", log, 2_000);
await whenRedisReady(redis, 5_000);
const store = new RedisStore(redis);
await store.load();

function limiter(shared: PoolStore | null, sliceFraction: number): Limiter {
  return new Limiter({
    gatewayId: "gw_bench",
    shared,
    prefix,
    userConcurrencyMax: 0,
    sliceFraction,
    sliceIdleMs: 500,
    redisRetryMs: 1_000,
    slotHoldMs: 30_000,
    liveGateways: () => Promise.resolve(1),
    monthSpendMicros: () => Promise.resolve(0n),
    ping: () => Promise.resolve(true),
    log,
  });
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

async function measure(name: string, l: Limiter, key: KeyLimits): Promise<Record<string, unknown>> {
  l.start();
  const keyId = `key_${randomUUID()}`;
  const times: number[] = [];
  for (let i = 0; i < DECISIONS + 1_000; i++) {
    const t = performance.now();
    const a = await l.admitStart({ keyId, userId: "usr_bench", key });
    await l.admitBody(a, { keyId, key, estimatedTokens: 300, heldMicros: null, agentId: null, agent: null });
    a.end({ tokens: 250, chargedMicros: null });
    if (i >= 1_000) times.push((performance.now() - t) * 1000);
  }
  await l.close();
  times.sort((a, b) => a - b);
  return { what: name, decisions: DECISIONS, p50Us: +percentile(times, 0.5).toFixed(1), p99Us: +percentile(times, 0.99).toFixed(1) };
}

// Limits high enough that the run is never refused (a refusal is cheaper: it is answered from memory).
const limited: KeyLimits = { rpm: 10_000_000, tpm: 1_000_000_000, concurrency: 10_000, monthlyBudgetMicros: null };
const none: KeyLimits = { rpm: null, tpm: null, concurrency: null, monthlyBudgetMicros: null };
const results = [
  await measure("no limits on the key", limiter(store, 0.0025), none),
  await measure("in-process store (no REDIS_URL)", limiter(null, 0.0025), limited),
  await measure("Redis, local slices (default)", limiter(store, 0.0025), limited),
  await measure("Redis, no slices (a round trip per decision)", limiter(store, 0), limited),
];
console.table(results);
console.log(JSON.stringify(results));
const keys = await redis.keys(`${prefix}*`);
if (keys.length > 0) await redis.del(...keys);
redis.disconnect();
