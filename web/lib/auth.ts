import "server-only";
import type { NextAuthOptions } from "next-auth";
import CredentialsProvider from "next-auth/providers/credentials";
import { verifyPassword } from "@wellspring/db/core";
import { db } from "./db";
import { clearSigninFailures, recordSigninFailure, signinLocked } from "./throttle";

/** How long a sign-in lasts, seconds. */
export const SESSION_MAX_AGE_S = 7 * 24 * 3600;

function clientIp(headers: Record<string, unknown> | undefined): string {
  const forwarded = headers?.["x-forwarded-for"];
  const first = typeof forwarded === "string" ? forwarded.split(",")[0]?.trim() : undefined;
  return first || "local";
}

export const authOptions: NextAuthOptions = {
  session: { strategy: "jwt", maxAge: SESSION_MAX_AGE_S },
  pages: { signIn: "/signin" },
  providers: [
    CredentialsProvider({
      name: "Email and password",
      credentials: { email: { label: "Email", type: "email" }, password: { label: "Password", type: "password" } },
      async authorize(credentials, req) {
        const email = String(credentials?.email ?? "").trim().toLowerCase();
        const password = String(credentials?.password ?? "");
        const keys = [`email:${email}`, `ip:${clientIp(req.headers)}`];
        if (await signinLocked(keys)) throw new Error("throttled");
        const user = await db().user.findUnique({ where: { email } });
        const ok = await verifyPassword(password, user?.passwordHash ?? null);
        if (!user || !ok) {
          await recordSigninFailure(keys);
          throw new Error("invalid");
        }
        if (user.status !== "active") throw new Error("suspended");
        await clearSigninFailures(email);
        return { id: user.id, email: user.email, name: user.name ?? null };
      },
    }),
  ],
  callbacks: {
    jwt({ token, user }) {
      if (user) token.uid = user.id;
      return token;
    },
    session({ session, token }) {
      // Only the id travels in the session; roles and status are read from the database on every request.
      return { ...session, user: { ...session.user, id: String(token.uid ?? "") } };
    },
  },
};
