"use client";
import { useRouter } from "next/navigation";
import { useActionState, useEffect } from "react";
import { submitTo } from "../../submit";
import { buttonClass, FieldError, inputClass } from "../../ui";
import { resetPasswordAction } from "./actions";

export function ResetForm({ token }: { token: string }) {
  const router = useRouter();
  const [state, action, pending] = useActionState(resetPasswordAction, null);
  useEffect(() => {
    if (state?.done) router.push("/signin?notice=password-reset");
  }, [state, router]);
  return (
    <form onSubmit={submitTo(action)} className="mt-6 space-y-4" noValidate>
      <input type="hidden" name="token" value={token} />
      <label className="block text-sm font-medium text-slate-700">
        New password <span className="font-normal text-slate-400">(at least 10 characters)</span>
        <input
          name="password"
          type="password"
          autoComplete="new-password"
          className={inputClass}
          aria-invalid={Boolean(state?.password)}
          aria-describedby="reset-error"
        />
      </label>
      <label className="block text-sm font-medium text-slate-700">
        Repeat the new password
        <input name="confirm" type="password" autoComplete="new-password" className={inputClass} />
      </label>
      <FieldError id="reset-error" message={state?.password ?? state?.form} />
      <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>
        {pending ? "Saving…" : "Set new password"}
      </button>
    </form>
  );
}
