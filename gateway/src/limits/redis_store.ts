/**
 * Limits counted in Redis, shared by every gateway: one Lua script per decision (atomic across the pools of one
 * owner, which share a hash tag, so Redis Cluster runs it on one node), time from Redis `TIME` (gateways' clocks
 * never matter). The rules are `pool.ts`'s; `limits.test.ts` runs the same cases against this store and the
 * in-process one.
 */
import type { Redis } from "ioredis";
import type { PoolGive, PoolTake, TakeResult } from "./pool.ts";
import { SLOT_HOLD_MS_DEFAULT, type PoolStore } from "./store.ts";

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/** Live slot count of a slots hash; expired gateways' holdings are removed. */
const SLOTS_USED = `local function slots_used(key, now)
  local h = redis.call('HGETALL', key)
  local counts, exps = {}, {}
  for j = 1, #h, 2 do
    local f, v = h[j], tonumber(h[j + 1])
    local p, g = string.sub(f, 1, 2), string.sub(f, 3)
    if p == 'c:' then counts[g] = v elseif p == 'e:' then exps[g] = v end
  end
  local used = 0
  for g, c in pairs(counts) do
    local e = exps[g]
    if e == nil or e < now then redis.call('HDEL', key, 'c:' .. g, 'e:' .. g) else used = used + c end
  end
  return used
end
local function refilled(key, cap, rate, now)
  local s = redis.call('HMGET', key, 'l', 't')
  if not s[1] then return nil end
  local elapsed = now - tonumber(s[2])
  if elapsed < 0 then elapsed = 0 end
  return math.min(cap, tonumber(s[1]) + elapsed * rate)
end
`;

/**
 * KEYS: pools, then (when ARGV[3] is not '') the decision's key. ARGV: gateway, slot hold ms, decision memory ms
 * ('' = none), then per pool: kind, capacity, refill/ms, debt, ttl ms, init ('' = ask), amount, want. A decision
 * that took is remembered under its key: the same decision sent again (a retry after a timeout whose first
 * attempt did run) answers what it answered, without taking twice.
 */
const TAKE = `${NOW}${SLOTS_USED}
local gw, hold, memory = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = #KEYS
if memory ~= '' then
  n = n - 1
  local prior = redis.call('GET', KEYS[#KEYS])
  if prior then return cjson.decode(prior) end
end
local levels = {}
for i = 1, n do
  local b = 3 + (i - 1) * 8
  local kind, cap, rate, debt = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), ARGV[b + 4] == '1'
  local init, amount = ARGV[b + 6], tonumber(ARGV[b + 7])
  if kind == 'slots' then
    local free = cap - slots_used(KEYS[i], now)
    if free < amount then return {0, i, -1, tostring(free)} end
    levels[i] = free
  else
    local level = refilled(KEYS[i], cap, rate, now)
    if level == nil then
      if init == '' then return {2, i} end
      level = math.min(cap, tonumber(init))
    end
    local ok
    if debt then ok = level > 0 or amount == 0 else ok = level >= amount end
    if not ok then
      local retry = -1
      if rate > 0 then
        local need
        if debt then need = math.min(1, amount) - level else need = amount - level end
        retry = math.max(1, math.ceil(need / rate))
      end
      return {0, i, retry, tostring(level)}
    end
    levels[i] = level
  end
end
local out = {1}
for i = 1, n do
  local b = 3 + (i - 1) * 8
  local kind, ttl, amount, want = ARGV[b + 1], tonumber(ARGV[b + 5]), tonumber(ARGV[b + 7]), tonumber(ARGV[b + 8])
  local grant = amount
  if want > amount and levels[i] >= want then grant = want end
  if kind == 'slots' then
    redis.call('HINCRBY', KEYS[i], 'c:' .. gw, grant)
    redis.call('HSET', KEYS[i], 'e:' .. gw, now + hold)
    redis.call('PEXPIRE', KEYS[i], hold * 2)
  else
    redis.call('HSET', KEYS[i], 'l', tostring(levels[i] - grant), 't', now)
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  out[i + 1] = grant
end
if memory ~= '' then redis.call('SET', KEYS[#KEYS], cjson.encode(out), 'PX', tonumber(memory)) end
return out
`;

/** KEYS: pools. ARGV: gateway, then per pool: kind, capacity, refill/ms, ttl ms, amount. */
const GIVE = `${NOW}${SLOTS_USED}
local gw = ARGV[1]
for i = 1, #KEYS do
  local b = 1 + (i - 1) * 5
  local kind, cap, rate, ttl, amount = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  if kind == 'slots' then
    local c = tonumber(redis.call('HGET', KEYS[i], 'c:' .. gw) or '0')
    if c > 0 then redis.call('HSET', KEYS[i], 'c:' .. gw, math.max(0, c - amount)) end
  else
    local level = refilled(KEYS[i], cap, rate, now)
    if level ~= nil then
      redis.call('HSET', KEYS[i], 'l', tostring(math.min(cap, level + amount)), 't', now)
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  end
end
return 1
`;

/** KEYS: slot pools. ARGV: gateway, slot hold ms. */
const RENEW = `${NOW}
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], 'c:' .. ARGV[1]) == 1 then
    redis.call('HSET', KEYS[i], 'e:' .. ARGV[1], now + tonumber(ARGV[2]))
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]) * 2)
  end
end
return 1
`;

class Script {
  #sha: string | null = null;
  constructor(readonly source: string) {}

  async load(redis: Redis): Promise<void> {
    this.#sha = (await redis.script("LOAD", this.source)) as string;
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    if (this.#sha) {
      try {
        return await redis.evalsha(this.#sha, keys.length, ...keys, ...args);
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      }
    }
    // First use, or Redis restarted and lost its script cache.
    this.#sha = (await redis.script("LOAD", this.source)) as string;
    return redis.evalsha(this.#sha, keys.length, ...keys, ...args);
  }
}

/**
 * How long Redis remembers a decision that took, ms: far beyond a command's timeout (`LIMITS_REDIS_TIMEOUT_MS`,
 * 1 s), within which the limiter sends a failed decision again.
 */
export const DECISION_MEMORY_MS = 10_000;

// One per process: a script's SHA is the same on every connection.
const TAKE_SCRIPT = new Script(TAKE);
const GIVE_SCRIPT = new Script(GIVE);
const RENEW_SCRIPT = new Script(RENEW);

export class RedisStore implements PoolStore {
  readonly kind = "redis";
  readonly #take = TAKE_SCRIPT;
  readonly #give = GIVE_SCRIPT;
  readonly #renew = RENEW_SCRIPT;

  constructor(
    readonly redis: Redis,
    private readonly slotHoldMs = SLOT_HOLD_MS_DEFAULT,
  ) {}

  /** Loads the scripts, so the first decisions are not ordered behind a script load. */
  async load(): Promise<void> {
    for (const script of [this.#take, this.#give, this.#renew]) await script.load(this.redis);
  }

  async take(gatewayId: string, takes: readonly PoolTake[], decisionId?: string): Promise<TakeResult> {
    const args: (string | number)[] = [gatewayId, this.slotHoldMs, decisionId === undefined ? "" : DECISION_MEMORY_MS];
    for (const { spec, amount, want } of takes) {
      args.push(spec.kind, spec.capacity, spec.refillPerMs, spec.debt ? "1" : "0", spec.ttlMs, spec.init === null ? "" : spec.init, amount, want);
    }
    const keys = takes.map((t) => t.spec.key);
    // The decision's key shares the pools' hash tag (one owner), so a Redis Cluster runs the script on one node.
    if (decisionId !== undefined) keys.push(`${keys[0]!.slice(0, keys[0]!.indexOf("}") + 1)}:decision:${gatewayId}:${decisionId}`);
    const out = (await this.#take.run(this.redis, keys, args)) as (number | string)[];
    if (out[0] === 1) return { ok: true, granted: out.slice(1).map(Number) };
    const index = Number(out[1]) - 1;
    if (out[0] === 2) return { ok: false, reason: "missing", index };
    const retry = Number(out[2]);
    return { ok: false, reason: "refused", index, retryAfterMs: retry < 0 ? null : retry, level: Number(out[3]) };
  }

  async give(gatewayId: string, gives: readonly PoolGive[]): Promise<void> {
    if (gives.length === 0) return;
    const args: (string | number)[] = [gatewayId];
    for (const { spec, amount } of gives) args.push(spec.kind, spec.capacity, spec.refillPerMs, spec.ttlMs, amount);
    await this.#give.run(
      this.redis,
      gives.map((g) => g.spec.key),
      args,
    );
  }

  async renew(gatewayId: string, slotKeys: readonly string[]): Promise<void> {
    if (slotKeys.length === 0) return;
    await this.#renew.run(this.redis, slotKeys, [gatewayId, this.slotHoldMs]);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
