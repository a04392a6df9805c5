import "server-only";
import { randomBytes } from "node:crypto";
import { cookies } from "next/headers";

/**
 * The device cookie: a random id the portal sets on sign-up and sign-in (httpOnly, long-lived) so that two
 * accounts used from one browser are linked (gateway/src/risk/account_links.ts). It identifies the browser to
 * the hub only; it is stored as a keyed HMAC, never as it is.
 */
export const DEVICE_COOKIE = "ws_device";
/** How long the device cookie lasts, seconds (2 years; each sign-in keeps the same id). */
export const DEVICE_COOKIE_MAX_AGE_S = 2 * 365 * 24 * 3600;
/** Random bytes in a device id. */
const DEVICE_ID_BYTES = 16;
const DEVICE_ID = /^[A-Za-z0-9_-]{22}$/;

/** The device id in a cookie value, or null when it is not one the portal sets. */
export function parseDeviceId(value: string | undefined): string | null {
  return value !== undefined && DEVICE_ID.test(value) ? value : null;
}

/** This browser's device id: the cookie's, or a new one set on the response. Only where cookies may be set. */
export async function portalDeviceId(): Promise<string> {
  const jar = await cookies();
  const existing = parseDeviceId(jar.get(DEVICE_COOKIE)?.value);
  if (existing) return existing;
  const id = randomBytes(DEVICE_ID_BYTES).toString("base64url");
  jar.set(DEVICE_COOKIE, id, {
    httpOnly: true,
    sameSite: "lax",
    secure: (process.env.NEXTAUTH_URL ?? "").startsWith("https:"),
    maxAge: DEVICE_COOKIE_MAX_AGE_S,
    path: "/",
  });
  return id;
}
