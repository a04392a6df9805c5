import Link from "next/link";
import { SignUpForm } from "./signup-form";

export const metadata = { title: "Create an account — Wellspring" };

export default function SignUpPage() {
  return (
    <main className="mx-auto flex min-h-screen max-w-md flex-col justify-center px-6">
      <Link href="/" className="mb-8 text-sm font-semibold text-indigo-600">
        Wellspring
      </Link>
      <h1 className="text-2xl font-semibold tracking-tight">Create your account</h1>
      <p className="mt-1 text-sm text-slate-500">
        Already have one?{" "}
        <Link className="font-medium text-indigo-600 hover:underline" href="/signin">
          Sign in
        </Link>
      </p>
      <SignUpForm />
    </main>
  );
}
