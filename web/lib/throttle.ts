import "server-only";
import { db } from "./db";

/** Failed sign-ins allowed per email in a window, and per client address (shared by many accounts). */
export const SIGNIN_FAILURES_PER_EMAIL_MAX = 5;
export const SIGNIN_FAILURES_PER_IP_MAX = 30;
/** The throttling window, ms. */
export const SIGNIN_WINDOW_MS = 15 * 60 * 1000;

const limitOf = (key: string) => (key.startsWith("email:") ? SIGNIN_FAILURES_PER_EMAIL_MAX : SIGNIN_FAILURES_PER_IP_MAX);

/** True when any of the keys has used up its failures in the current window. */
export async function signinLocked(keys: string[]): Promise<boolean> {
  const rows = await db().loginFailure.findMany({ where: { key: { in: keys } } });
  const now = Date.now();
  return rows.some((r) => now - r.windowStart.getTime() < SIGNIN_WINDOW_MS && r.failures >= limitOf(r.key));
}

/** Counts a failure against every key (a new window starts when the old one has passed). */
export async function recordSigninFailure(keys: string[]): Promise<void> {
  const windowStart = new Date(Date.now() - SIGNIN_WINDOW_MS);
  for (const key of keys) {
    await db().$executeRaw`
      INSERT INTO login_failures (key, failures, window_start) VALUES (${key}, 1, now())
      ON CONFLICT (key) DO UPDATE SET
        failures = CASE WHEN login_failures.window_start < ${windowStart} THEN 1 ELSE login_failures.failures + 1 END,
        window_start = CASE WHEN login_failures.window_start < ${windowStart} THEN now() ELSE login_failures.window_start END`;
  }
}

export async function clearSigninFailures(email: string): Promise<void> {
  await db().loginFailure.deleteMany({ where: { key: `email:${email}` } });
}
