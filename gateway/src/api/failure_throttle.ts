/**
 * Throttles guesses of a secret (the admin token) per client address: after `failuresMax` failures within
 * `windowMs` of the first, every attempt from that address is refused for `blockMs`, right or wrong, so a
 * refusal says nothing about the guess. IPv6 addresses count per /64 (one host usually holds a whole /64).
 * Time comes from the caller (ms), so tests drive it.
 */
import { isIPv6 } from "node:net";

export interface FailureThrottleOptions {
  /** Failures allowed per address within the window; the next attempt is refused. */
  failuresMax: number;
  /** Failures are counted within this long from an address's first failure, ms. */
  windowMs: number;
  /** An address that used up its failures is refused this long, ms. */
  blockMs: number;
  /** Addresses tracked at most; when full, expired entries go, then the oldest. */
  addressesMax: number;
}

interface Entry {
  windowStartedAt: number;
  failures: number;
  blockedUntil: number;
}

export class FailureThrottle {
  readonly #entries = new Map<string, Entry>();

  constructor(private readonly opts: FailureThrottleOptions) {}

  /** How long the address must wait before its next attempt, ms (0 = it may try now). */
  waitMs(address: string, now: number): number {
    const e = this.#entries.get(throttleKey(address));
    return e && e.blockedUntil > now ? e.blockedUntil - now : 0;
  }

  /** Records a failed attempt; returns the failures counted in the current window. */
  failed(address: string, now: number): number {
    const key = throttleKey(address);
    let e = this.#entries.get(key);
    if (!e || (now - e.windowStartedAt >= this.opts.windowMs && e.blockedUntil <= now)) {
      if (!e) this.#makeRoom(now);
      e = { windowStartedAt: now, failures: 0, blockedUntil: 0 };
      this.#entries.set(key, e);
    }
    e.failures++;
    if (e.failures >= this.opts.failuresMax) e.blockedUntil = now + this.opts.blockMs;
    return e.failures;
  }

  /** A right answer clears the address's count. */
  succeeded(address: string): void {
    this.#entries.delete(throttleKey(address));
  }

  #makeRoom(now: number): void {
    if (this.#entries.size < this.opts.addressesMax) return;
    for (const [k, e] of this.#entries) {
      if (e.blockedUntil <= now && now - e.windowStartedAt >= this.opts.windowMs) this.#entries.delete(k);
    }
    while (this.#entries.size >= this.opts.addressesMax) this.#entries.delete(this.#entries.keys().next().value!);
  }
}

/** The unit an address is counted as: an IPv4 address (also when IPv4-mapped) or an IPv6 /64. */
export function throttleKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head = "", tail = ""] = address.split("::");
  const headGroups = head ? head.split(":") : [];
  const tailGroups = address.includes("::") ? (tail ? tail.split(":") : []) : [];
  const groups = address.includes("::") ? [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups] : headGroups;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}
