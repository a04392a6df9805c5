"use client";
import { signOut } from "next-auth/react";
import { submitTo } from "../../submit";
import { useActionState, useEffect } from "react";
import { buttonClass, FieldError, inputClass } from "../../ui";
import { changePasswordAction } from "./actions";

export function PasswordForm() {
  const [state, action, pending] = useActionState(changePasswordAction, null);
  useEffect(() => {
    // The change ended every session of the account, this one too: clear its cookie and sign in again.
    if (state?.done) void signOut({ callbackUrl: "/signin?notice=password-changed" });
  }, [state]);
  return (
    <form onSubmit={submitTo(action)} className="space-y-3">
      <label className="block text-sm font-medium text-slate-700">
        Current password
        <input
          name="current"
          type="password"
          autoComplete="current-password"
          className={inputClass}
          aria-invalid={Boolean(state?.current)}
          aria-describedby="current-error"
        />
      </label>
      <FieldError id="current-error" message={state?.current} />
      <label className="block text-sm font-medium text-slate-700">
        New password
        <input
          name="password"
          type="password"
          autoComplete="new-password"
          className={inputClass}
          aria-invalid={Boolean(state?.password)}
          aria-describedby="new-error"
        />
      </label>
      <label className="block text-sm font-medium text-slate-700">
        Repeat the new password
        <input name="confirm" type="password" autoComplete="new-password" className={inputClass} />
      </label>
      <FieldError id="new-error" message={state?.password} />
      {state?.done && (
        <p role="status" className="text-sm text-emerald-700">
          Password changed. Signing out…
        </p>
      )}
      <p className="text-xs text-slate-500">Changing it signs your account out everywhere, here too.</p>
      <button type="submit" className={buttonClass} disabled={pending}>
        {pending ? "Saving…" : "Change password"}
      </button>
    </form>
  );
}
