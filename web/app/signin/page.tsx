import Link from "next/link";
import { SignInForm } from "./signin-form";

export const metadata = { title: "Sign in — Wellspring" };

/** What the page says when another page sent the user here (`?notice=`). */
const NOTICES: Record<string, string> = {
  "signed-up":
    "Now sign in with the email and password you chose. If that address already had an account, nothing about it changed: its owner got an email, and its own password still applies.",
  "password-changed": "Password changed, and every session of your account signed out. Sign in again with the new password.",
  "password-reset": "Your new password is set, and every session of your account signed out. Sign in with it.",
  "admin-created": "Your administrator account is ready. Sign in with its email and password.",
  "signed-out-everywhere": "Every session of your account is signed out, this one too. Sign in again.",
};

export default async function SignInPage({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  const notice = (await searchParams).notice;
  const text = typeof notice === "string" ? NOTICES[notice] : undefined;
  return (
    <main className="mx-auto flex min-h-screen max-w-md flex-col justify-center px-6">
      <Link href="/" className="mb-8 text-sm font-semibold text-indigo-600">
        Wellspring
      </Link>
      <h1 className="text-2xl font-semibold tracking-tight">Sign in</h1>
      <p className="mt-1 text-sm text-slate-500">
        New here?{" "}
        <Link className="font-medium text-indigo-600 hover:underline" href="/signup">
          Create an account
        </Link>
      </p>
      {text && (
        <p role="status" data-testid="signin-notice" className="mt-4 rounded-md bg-indigo-50 px-3 py-2 text-sm text-indigo-800">
          {text}
        </p>
      )}
      <SignInForm />
      <p className="mt-4 text-sm text-slate-500">
        <Link className="font-medium text-indigo-600 hover:underline" href="/forgot-password">
          Forgot password?
        </Link>
      </p>
    </main>
  );
}
