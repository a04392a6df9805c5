"use client";
import { signIn } from "next-auth/react";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { buttonClass, FieldError, inputClass } from "../ui";

const MESSAGES: Record<string, string> = {
  invalid: "Wrong email or password.",
  throttled: "Too many failed sign-ins. Wait 15 minutes and try again.",
  suspended: "This account is suspended.",
};

export function SignInForm() {
  const router = useRouter();
  const [error, setError] = useState<string | undefined>();
  const [pending, setPending] = useState(false);
  const submit = async (form: FormData) => {
    setPending(true);
    setError(undefined);
    const res = await signIn("credentials", { email: String(form.get("email")), password: String(form.get("password")), redirect: false });
    setPending(false);
    if (res?.ok) {
      router.push("/app");
      router.refresh();
    } else setError(MESSAGES[res?.error ?? ""] ?? "Sign-in failed. Try again.");
  };
  return (
    <form
      className="mt-6 space-y-4"
      onSubmit={(e) => {
        e.preventDefault();
        void submit(new FormData(e.currentTarget));
      }}
    >
      <label className="block text-sm font-medium text-slate-700">
        Email
        <input name="email" type="email" autoComplete="email" required className={inputClass} />
      </label>
      <label className="block text-sm font-medium text-slate-700">
        Password
        <input name="password" type="password" autoComplete="current-password" required className={inputClass} aria-invalid={Boolean(error)} aria-describedby="signin-error" />
      </label>
      <FieldError id="signin-error" message={error} />
      <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>{pending ? "Signing in…" : "Sign in"}</button>
    </form>
  );
}
