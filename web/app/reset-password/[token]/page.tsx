import type { Metadata } from "next";
import Link from "next/link";
import { resetLinkUsable } from "../../../lib/data/password-reset";
import { ResetForm } from "./reset-form";

// The token is in this page's URL: no Referer carries it to another site.
export const metadata: Metadata = { title: "Choose a new password — Wellspring", referrer: "no-referrer" };
export const dynamic = "force-dynamic";

export default async function ResetPasswordPage({ params }: { params: Promise<{ token: string }> }) {
  const { token } = await params;
  const usable = await resetLinkUsable(token);
  return (
    <main className="mx-auto flex min-h-screen max-w-md flex-col justify-center px-6">
      <Link href="/" className="mb-8 text-sm font-semibold text-indigo-600">
        Wellspring
      </Link>
      <h1 className="text-2xl font-semibold tracking-tight">Choose a new password</h1>
      {usable ? (
        <>
          <p className="mt-1 text-sm text-slate-500">Setting it signs your account out everywhere.</p>
          <ResetForm token={token} />
        </>
      ) : (
        <p role="alert" className="mt-4 text-sm text-red-600">
          This link has expired or was already used.{" "}
          <Link className="font-medium text-indigo-600 hover:underline" href="/forgot-password">
            Ask for a new one
          </Link>
          .
        </p>
      )}
    </main>
  );
}
