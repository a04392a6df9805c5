"use client";
import { useRouter } from "next/navigation";
import { useActionState, useEffect } from "react";
import { submitTo } from "../submit";
import { buttonClass, FieldError, inputClass } from "../ui";
import { setupAction } from "./actions";

export function SetupForm({ token }: { token: string }) {
  const router = useRouter();
  const [state, action, pending] = useActionState(setupAction, null);
  useEffect(() => {
    if (state?.done) router.push("/signin?notice=admin-created");
  }, [state, router]);
  return (
    <form onSubmit={submitTo(action)} className="mt-6 space-y-4" noValidate>
      <label className="block text-sm font-medium text-slate-700">
        Setup token <span className="font-normal text-slate-400">(from the hub&apos;s start log)</span>
        <input
          name="token"
          defaultValue={token}
          autoComplete="off"
          spellCheck={false}
          className={`${inputClass} font-mono`}
          aria-invalid={Boolean(state?.token)}
          aria-describedby="setup-token-error"
        />
      </label>
      <FieldError id="setup-token-error" message={state?.token} />
      <label className="block text-sm font-medium text-slate-700">
        Your email
        <input
          name="email"
          type="email"
          autoComplete="email"
          maxLength={255}
          className={inputClass}
          aria-invalid={Boolean(state?.email)}
          aria-describedby="setup-email-error"
        />
      </label>
      <FieldError id="setup-email-error" message={state?.email} />
      <label className="block text-sm font-medium text-slate-700">
        Password <span className="font-normal text-slate-400">(at least 10 characters)</span>
        <input
          name="password"
          type="password"
          autoComplete="new-password"
          maxLength={200}
          className={inputClass}
          aria-invalid={Boolean(state?.password)}
          aria-describedby="setup-password-error"
        />
      </label>
      <label className="block text-sm font-medium text-slate-700">
        Repeat the password
        <input name="confirm" type="password" autoComplete="new-password" maxLength={200} className={inputClass} />
      </label>
      <FieldError id="setup-password-error" message={state?.password} />
      <FieldError id="setup-form-error" message={state?.form} />
      <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>
        {pending ? "Creating…" : "Create administrator"}
      </button>
    </form>
  );
}
