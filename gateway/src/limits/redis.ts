/**
 * The gateway's Redis connection (ioredis), shared by everything that uses Redis (today: limits). Commands fail
 * fast while Redis is unreachable (no offline queue, a command timeout) so a request never waits on a dead Redis:
 * the limiter counts locally instead and tries Redis again.
 */
import { Redis } from "ioredis";
import type { Logger } from "../log.ts";

/**
 * A Redis command taking longer than this counts as Redis unreachable, ms. Not shorter: on a loaded machine a
 * gateway's event loop can stall a few hundred ms, and every command in flight then times out at once although
 * Redis answered (250 ms did that in CI: a gateway went local with each limit divided by the live gateways while
 * Redis was up). A Redis that refuses connections fails at once whatever this is.
 */
export const REDIS_COMMAND_TIMEOUT_MS_DEFAULT = 1_000;
/** Reconnect attempts back off up to this, ms. */
const REDIS_RECONNECT_MS_MAX = 1_000;

export function connectRedis(url: string, log: Logger, commandTimeoutMs = REDIS_COMMAND_TIMEOUT_MS_DEFAULT): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: commandTimeoutMs,
    connectTimeout: 2_000,
    retryStrategy: (attempt) => Math.min(attempt * 100, REDIS_RECONNECT_MS_MAX),
    lazyConnect: false,
  });
  let up = false;
  redis.on("ready", () => {
    up = true;
    log.info("redis.ready", {});
  });
  redis.on("error", (error: Error) => {
    // ioredis reports every failed reconnect; say it once per outage.
    if (up) log.warn("redis.error", { error: error.message });
    up = false;
  });
  return redis;
}

/** Does Redis answer now? */
export async function redisAnswers(redis: Redis): Promise<boolean> {
  try {
    return (await redis.ping()) === "PONG";
  } catch {
    return false;
  }
}

/** Resolves when the connection is ready, or rejects after `timeoutMs`. */
export function whenRedisReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === "ready") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off("ready", onReady);
      reject(new Error(`Redis did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once("ready", onReady);
  });
}
