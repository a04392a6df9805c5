import Link from "next/link";
import { PASSWORD_RESET_TTL_MS } from "../../lib/data/password-reset";
import { ForgotForm } from "./forgot-form";

export const metadata = { title: "Forgot password — Wellspring" };

export default function ForgotPasswordPage() {
  return (
    <main className="mx-auto flex min-h-screen max-w-md flex-col justify-center px-6">
      <Link href="/" className="mb-8 text-sm font-semibold text-indigo-600">
        Wellspring
      </Link>
      <h1 className="text-2xl font-semibold tracking-tight">Forgot your password?</h1>
      <p className="mt-1 text-sm text-slate-500">
        Enter the email address of your account. We send it a link to choose a new password; the link works once, for {PASSWORD_RESET_TTL_MS / 60_000} minutes.
      </p>
      <ForgotForm />
      <p className="mt-4 text-sm text-slate-500">
        <Link className="font-medium text-indigo-600 hover:underline" href="/signin">
          Back to sign in
        </Link>
      </p>
    </main>
  );
}
