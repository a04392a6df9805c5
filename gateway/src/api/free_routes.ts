/**
 * Routes the provider does not charge for (token counting, moderation) are never billed; they still use an
 * owner's key and capacity, so each virtual key may call them at most `requestsPerWindow` times per window.
 * Kept in this gateway's memory (fixed windows per key).
 */
import { GatewayError } from "../errors.ts";

/** Free-route calls one key may make per window. */
export const FREE_ROUTE_REQUESTS_PER_WINDOW = 100;
/** The window, seconds. */
export const FREE_ROUTE_WINDOW_SECONDS = 60;
/** Keys tracked at most; past it the oldest windows are forgotten. */
const TRACKED_KEYS_MAX = 100_000;

export class FreeRouteLimiter {
  readonly #windows = new Map<string, { startedAt: number; count: number }>();

  constructor(
    readonly requestsPerWindow = FREE_ROUTE_REQUESTS_PER_WINDOW,
    readonly windowSeconds = FREE_ROUTE_WINDOW_SECONDS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one call for `keyId`: null when allowed, else the seconds until the key may call again. */
  take(keyId: string): number | null {
    const now = this.now();
    const windowMs = this.windowSeconds * 1000;
    let w = this.#windows.get(keyId);
    if (!w || now - w.startedAt >= windowMs) {
      if (!w && this.#windows.size >= TRACKED_KEYS_MAX) this.#windows.delete(this.#windows.keys().next().value!);
      w = { startedAt: now, count: 0 };
      this.#windows.set(keyId, w);
    }
    if (w.count >= this.requestsPerWindow) return Math.max(1, Math.ceil((w.startedAt + windowMs - now) / 1000));
    w.count++;
    return null;
  }
}

/** The 429 a key past its free-route window gets, `wait` seconds before it may call again. */
export function freeRouteLimited(limiter: FreeRouteLimiter, wait: number): GatewayError {
  return new GatewayError(
    "rate_limited",
    `This endpoint is free and limited to ${limiter.requestsPerWindow} requests per ${limiter.windowSeconds} s per key; retry in ${wait} s.`,
    { retryAfterSeconds: wait },
  );
}
