import "server-only";
import type { NextAuthOptions } from "next-auth";
import CredentialsProvider from "next-auth/providers/credentials";
import { verifyPassword } from "@wellspring/db/core";
import { addressKey, clientAddressOf } from "./client-address";
import { db } from "./db";
import { portalDeviceId } from "./device";
import { recordSeen } from "./links";
import { signinAddressKey, signinGates, signinSucceeded, takeAttempt } from "./throttle";

/** How long a sign-in lasts, seconds. */
export const SESSION_MAX_AGE_S = 7 * 24 * 3600;
/** Longest email accepted at sign-in, characters (longer ones cannot belong to an account). */
const SIGNIN_EMAIL_CHARS_MAX = 320;

/**
 * The error codes `authorize` throws; next-auth hands the message to the sign-in form as `error`.
 * `throttled:<scope>:<seconds>`: wait that long (scope `account` for this account, `network` for the address).
 */
export type SigninError = "invalid" | "suspended" | `throttled:${"account" | "network"}:${number}`;

/**
 * One sign-in attempt: throttled, then the password checked; the user to sign in, or a SigninError thrown. A
 * right password records the address and device (`deviceId`, the portal's device cookie) for account links —
 * a suspended account's too.
 */
export async function authorizeSignin(
  input: { email: string; password: string; clientAddress: string; deviceId?: string | null },
  now: Date = new Date(),
): Promise<{ id: string; email: string; name: string | null; sessionVersion: number }> {
  const email = input.email.trim().toLowerCase().slice(0, SIGNIN_EMAIL_CHARS_MAX);
  const address = addressKey(input.clientAddress);
  const gate = await takeAttempt(signinGates(email, address), now);
  if (!gate.ok) {
    const scope = gate.key === signinAddressKey(address) ? "network" : "account";
    throw new Error(`throttled:${scope}:${Math.ceil(gate.waitMs / 1000)}` satisfies SigninError);
  }
  const user = await db().user.findUnique({ where: { email } });
  const ok = await verifyPassword(input.password, user?.passwordHash ?? null);
  if (!user || !ok) throw new Error("invalid" satisfies SigninError);
  await signinSucceeded(email, address);
  await recordSeen(user.id, "signin", input.clientAddress, input.deviceId ?? null);
  if (user.status !== "active") throw new Error("suspended" satisfies SigninError);
  return { id: user.id, email: user.email, name: user.name ?? null, sessionVersion: user.sessionVersion };
}

export const authOptions: NextAuthOptions = {
  session: { strategy: "jwt", maxAge: SESSION_MAX_AGE_S },
  pages: { signIn: "/signin" },
  providers: [
    CredentialsProvider({
      name: "Email and password",
      credentials: { email: { label: "Email", type: "email" }, password: { label: "Password", type: "password" } },
      async authorize(credentials, req) {
        return authorizeSignin({
          email: String(credentials?.email ?? ""),
          password: String(credentials?.password ?? ""),
          clientAddress: clientAddressOf(req.headers),
          deviceId: await portalDeviceId(),
        });
      },
    }),
  ],
  callbacks: {
    jwt({ token, user }) {
      if (user) {
        token.uid = user.id;
        token.sv = (user as { sessionVersion?: number }).sessionVersion ?? 0;
      }
      return token;
    },
    session({ session, token }) {
      // The id and the session version travel in the session; roles, status and the current version are read
      // from the database on every request (lib/data/actor.ts).
      return { ...session, user: { ...session.user, id: typeof token.uid === "string" ? token.uid : "", sv: typeof token.sv === "number" ? token.sv : -1 } };
    },
  },
};
