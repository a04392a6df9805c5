import Link from "next/link";
import { SignInForm } from "./signin-form";

export const metadata = { title: "Sign in — Wellspring" };

export default function SignInPage() {
  return (
    <main className="mx-auto flex min-h-screen max-w-md flex-col justify-center px-6">
      <Link href="/" className="mb-8 text-sm font-semibold text-indigo-600">Wellspring</Link>
      <h1 className="text-2xl font-semibold tracking-tight">Sign in</h1>
      <p className="mt-1 text-sm text-slate-500">
        New here? <Link className="font-medium text-indigo-600 hover:underline" href="/signup">Create an account</Link>
      </p>
      <SignInForm />
    </main>
  );
}
