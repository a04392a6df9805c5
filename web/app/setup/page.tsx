import type { Metadata } from "next";
import Link from "next/link";
import { setupOpen } from "../../lib/data/setup";
import { SetupForm } from "./setup-form";

// The setup token may be in this page's URL: no Referer carries it to another site.
export const metadata: Metadata = { title: "First-run setup — Wellspring", referrer: "no-referrer" };
export const dynamic = "force-dynamic";

/**
 * The first administrator, without a terminal: open while no administrator exists, and only with the single-use
 * token a hub prints in its start log (and keeps in DATA_DIR/admin-setup-url).
 */
export default async function SetupPage({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  const token = (await searchParams).token;
  const open = await setupOpen();
  return (
    <main className="mx-auto flex min-h-screen max-w-md flex-col justify-center px-6 py-10">
      <Link href="/" className="mb-8 text-sm font-semibold text-indigo-600">
        Wellspring
      </Link>
      <h1 className="text-2xl font-semibold tracking-tight">Create the first administrator</h1>
      {open ? (
        <>
          <p className="mt-1 text-sm text-slate-500">
            Administrators publish prices, review risk flags, manage accounts and pay owners. This page works once, with the setup link the hub printed when it
            started; afterwards administrators are made with <code className="text-xs">npm run admin -- create-admin</code>.
          </p>
          <SetupForm token={typeof token === "string" ? token : ""} />
        </>
      ) : (
        <p role="status" data-testid="setup-closed" className="mt-4 text-sm text-slate-600">
          Setup is done: this hub has an administrator.{" "}
          <Link className="font-medium text-indigo-600 hover:underline" href="/signin">
            Sign in
          </Link>
          .
        </p>
      )}
    </main>
  );
}
