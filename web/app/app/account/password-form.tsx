"use client";
import { submitTo } from "../../submit";
import { useActionState } from "react";
import { buttonClass, FieldError, inputClass } from "../../ui";
import { changePasswordAction } from "./actions";

export function PasswordForm() {
  const [state, action, pending] = useActionState(changePasswordAction, null);
  return (
    <form onSubmit={submitTo(action)} className="space-y-3">
      <label className="block text-sm font-medium text-slate-700">Current password
        <input name="current" type="password" autoComplete="current-password" className={inputClass} aria-invalid={Boolean(state?.current)} aria-describedby="current-error" />
      </label>
      <FieldError id="current-error" message={state?.current} />
      <label className="block text-sm font-medium text-slate-700">New password
        <input name="password" type="password" autoComplete="new-password" className={inputClass} aria-invalid={Boolean(state?.password)} aria-describedby="new-error" />
      </label>
      <label className="block text-sm font-medium text-slate-700">Repeat the new password
        <input name="confirm" type="password" autoComplete="new-password" className={inputClass} />
      </label>
      <FieldError id="new-error" message={state?.password} />
      {state?.done && <p role="status" className="text-sm text-emerald-700">Password changed.</p>}
      <button type="submit" className={buttonClass} disabled={pending}>{pending ? "Saving…" : "Change password"}</button>
    </form>
  );
}
