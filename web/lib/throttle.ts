import "server-only";
import { db } from "./db";

/**
 * The portal's throttles, counted in PostgreSQL (table `throttle_counters`) so every portal instance shares
 * them. Two kinds of counter:
 * - a **streak** slows down: after `freeCount` attempts, each further one waits `delayMsBase · 2^(n − free)`
 *   (at most `delayMsMax`) after the previous one; it is forgotten after `idleResetMs` without attempts.
 * - a **window** limits: at most `countMax` attempts in `windowMs` from the window's first attempt.
 * An attempt is counted before the work it guards (checking a password, sending a mail), in one transaction
 * with the check, so parallel attempts cannot all pass; a sign-in that succeeds is then refunded.
 */
export interface StreakPolicy {
  kind: "streak";
  freeCount: number;
  delayMsBase: number;
  delayMsMax: number;
  idleResetMs: number;
}

export interface WindowPolicy {
  kind: "window";
  countMax: number;
  windowMs: number;
}

export type ThrottlePolicy = StreakPolicy | WindowPolicy;

const SECOND_MS = 1_000;
const MINUTE_MS = 60 * SECOND_MS;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** Sign-in failures of one account from one client address: fast exponential slow-down, up to 15 minutes. */
export const SIGNIN_PAIR: StreakPolicy = { kind: "streak", freeCount: 3, delayMsBase: SECOND_MS, delayMsMax: 15 * MINUTE_MS, idleResetMs: DAY_MS };
/**
 * Sign-in failures of one account from all addresses (a distributed guesser): starts later and stops at
 * 30 seconds, the longest the real owner ever waits because of someone else's guesses. Never a lockout.
 */
export const SIGNIN_ACCOUNT: StreakPolicy = { kind: "streak", freeCount: 10, delayMsBase: SECOND_MS, delayMsMax: 30 * SECOND_MS, idleResetMs: DAY_MS };
/** Sign-in failures from one client address, over all accounts. */
export const SIGNIN_ADDRESS: WindowPolicy = { kind: "window", countMax: 50, windowMs: 15 * MINUTE_MS };
/** Sign-ups from one client address. */
export const SIGNUP_ADDRESS: WindowPolicy = { kind: "window", countMax: 20, windowMs: HOUR_MS };
/** Password reset requests from one client address, and for one email address. */
export const RESET_ADDRESS: WindowPolicy = { kind: "window", countMax: 10, windowMs: HOUR_MS };
export const RESET_ACCOUNT: WindowPolicy = { kind: "window", countMax: 3, windowMs: HOUR_MS };
/** "Someone tried to sign up with your address" mails to one account (the rest are not sent). */
export const SIGNUP_NOTICE_ACCOUNT: WindowPolicy = { kind: "window", countMax: 1, windowMs: HOUR_MS };
/** Counters untouched this long are deleted (longer than every policy's memory). */
export const THROTTLE_RETENTION_MS = 2 * DAY_MS;

export interface Counter {
  count: number;
  windowStart: Date;
  lastAt: Date;
}

/** The count a counter has at `nowMs` (a streak idle too long, or a window that passed, counts 0). */
export function liveCount(policy: ThrottlePolicy, c: Counter | undefined, nowMs: number): number {
  if (!c) return 0;
  if (policy.kind === "streak") return nowMs - c.lastAt.getTime() >= policy.idleResetMs ? 0 : c.count;
  return nowMs - c.windowStart.getTime() >= policy.windowMs ? 0 : c.count;
}

/** The delay a streak imposes after `count` attempts, ms. */
export function streakDelayMs(policy: StreakPolicy, count: number): number {
  if (count < policy.freeCount) return 0;
  return Math.min(policy.delayMsMax, policy.delayMsBase * 2 ** (count - policy.freeCount));
}

/** How long, ms, the next attempt must wait at `nowMs` (0 = it may go now). */
export function waitMs(policy: ThrottlePolicy, c: Counter | undefined, nowMs: number): number {
  const count = liveCount(policy, c, nowMs);
  if (!c || count === 0) return 0;
  if (policy.kind === "streak") return Math.max(0, c.lastAt.getTime() + streakDelayMs(policy, count) - nowMs);
  return count >= policy.countMax ? Math.max(0, c.windowStart.getTime() + policy.windowMs - nowMs) : 0;
}

/** The counter after one more attempt at `nowMs`. */
export function counted(policy: ThrottlePolicy, c: Counter | undefined, nowMs: number): Counter {
  const now = new Date(nowMs);
  const count = liveCount(policy, c, nowMs);
  return { count: count + 1, windowStart: count === 0 || !c ? now : c.windowStart, lastAt: now };
}

export interface Gate {
  key: string;
  policy: ThrottlePolicy;
}

export type TakeResult = { ok: true } | { ok: false; waitMs: number; key: string };

/**
 * Counts one attempt against every gate, or none when any of them says wait (then returns the longest wait
 * and which gate). Serialised per key with row locks, so parallel attempts see each other.
 */
export async function takeAttempt(gates: Gate[], now: Date = new Date()): Promise<TakeResult> {
  const nowMs = now.getTime();
  const sorted = [...gates].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const keys = sorted.map((g) => g.key);
  const result = await db().$transaction(async (tx) => {
    for (const key of keys) {
      await tx.$executeRaw`INSERT INTO throttle_counters (key, count, window_start, last_at) VALUES (${key}, 0, ${now}, ${now}) ON CONFLICT (key) DO NOTHING`;
    }
    const rows = await tx.$queryRaw<{ key: string; count: number; window_start: Date; last_at: Date }[]>`
      SELECT key, count, window_start, last_at FROM throttle_counters WHERE key = ANY(${keys}) ORDER BY key FOR UPDATE`;
    const byKey = new Map(rows.map((r) => [r.key, { count: r.count, windowStart: r.window_start, lastAt: r.last_at }]));
    let worst: { waitMs: number; key: string } | null = null;
    for (const g of sorted) {
      const w = waitMs(g.policy, byKey.get(g.key), nowMs);
      if (w > 0 && (!worst || w > worst.waitMs)) worst = { waitMs: w, key: g.key };
    }
    if (worst) return { ok: false as const, ...worst };
    for (const g of sorted) {
      const next = counted(g.policy, byKey.get(g.key), nowMs);
      await tx.$executeRaw`UPDATE throttle_counters SET count = ${next.count}, window_start = ${next.windowStart}, last_at = ${next.lastAt} WHERE key = ${g.key}`;
    }
    return { ok: true as const };
  });
  await db().$executeRaw`DELETE FROM throttle_counters WHERE last_at < ${new Date(nowMs - THROTTLE_RETENTION_MS)}`;
  return result;
}

/** Takes back one counted attempt from each key (a sign-in that turned out right was no failure). */
export async function refundAttempt(keys: string[]): Promise<void> {
  await db().$executeRaw`UPDATE throttle_counters SET count = GREATEST(count - 1, 0) WHERE key = ANY(${keys})`;
}

export async function clearCounters(keys: string[]): Promise<void> {
  await db().throttleCounter.deleteMany({ where: { key: { in: keys } } });
}

// Keys. Emails are the normalised sign-in name (known or not, so the throttle tells nothing about accounts).
export const signinAccountKey = (email: string) => `signin:acct:${email}`;
export const signinPairKey = (email: string, address: string) => `signin:pair:${email}|${address}`;
export const signinAddressKey = (address: string) => `signin:addr:${address}`;
export const signupAddressKey = (address: string) => `signup:addr:${address}`;
export const resetAddressKey = (address: string) => `reset:addr:${address}`;
export const resetAccountKey = (email: string) => `reset:acct:${email}`;
export const signupNoticeKey = (email: string) => `signup:notice:${email}`;

/** The three sign-in gates for one attempt; `address` is an `addressKey`. */
export function signinGates(email: string, address: string): Gate[] {
  return [
    { key: signinAccountKey(email), policy: SIGNIN_ACCOUNT },
    { key: signinPairKey(email, address), policy: SIGNIN_PAIR },
    { key: signinAddressKey(address), policy: SIGNIN_ADDRESS },
  ];
}

/** After a right password: the pair's streak ends, and the attempt is taken back from the others. */
export async function signinSucceeded(email: string, address: string): Promise<void> {
  await clearCounters([signinPairKey(email, address)]);
  await refundAttempt([signinAccountKey(email), signinAddressKey(address)]);
}

export interface SigninThrottleState {
  email: string;
  /** Failures counted for the account over all addresses (live). */
  failures: number;
  /** Client addresses with a live failure streak for the account. */
  addresses: number;
  /** When the next sign-in from a new address may go, or null when it may go now. */
  accountWaitUntil: Date | null;
}

/** The sign-in throttle of each of these accounts that has one (for the admin accounts page). */
export async function signinThrottleStates(emails: string[], now: Date = new Date()): Promise<Map<string, SigninThrottleState>> {
  const out = new Map<string, SigninThrottleState>();
  if (emails.length === 0) return out;
  const rows = await db().throttleCounter.findMany({
    where: { OR: [{ key: { in: emails.map(signinAccountKey) } }, ...emails.map((e) => ({ key: { startsWith: `signin:pair:${e}|` } }))] },
  });
  const nowMs = now.getTime();
  for (const row of rows) {
    const account = row.key.startsWith("signin:acct:");
    const email = emailOfSigninKey(row.key);
    if (!emails.includes(email)) continue; // a longer email that starts with this one and a "|"
    const live = liveCount(account ? SIGNIN_ACCOUNT : SIGNIN_PAIR, row, nowMs);
    if (live === 0) continue;
    const state = out.get(email) ?? { email, failures: 0, addresses: 0, accountWaitUntil: null };
    if (account) {
      state.failures = live;
      const w = waitMs(SIGNIN_ACCOUNT, row, nowMs);
      state.accountWaitUntil = w > 0 ? new Date(nowMs + w) : null;
    } else state.addresses += 1;
    out.set(email, state);
  }
  return out;
}

/** Ends every sign-in slow-down of an account (all addresses); the per-address limits stay. */
export async function clearSigninThrottle(email: string): Promise<number> {
  const rows = await db().throttleCounter.findMany({
    where: { OR: [{ key: signinAccountKey(email) }, { key: { startsWith: `signin:pair:${email}|` } }] },
    select: { key: true },
  });
  const keys = rows.map((r) => r.key).filter((k) => emailOfSigninKey(k) === email);
  await clearCounters(keys);
  return keys.length;
}

/** The email of a `signin:acct:` or `signin:pair:` key (an address never contains "|", an email may). */
function emailOfSigninKey(key: string): string {
  return key.startsWith("signin:acct:") ? key.slice("signin:acct:".length) : key.slice("signin:pair:".length, key.lastIndexOf("|"));
}
