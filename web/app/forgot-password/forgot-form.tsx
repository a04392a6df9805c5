"use client";
import { useActionState } from "react";
import { submitTo } from "../submit";
import { buttonClass, FieldError, inputClass } from "../ui";
import { requestResetAction } from "./actions";

export function ForgotForm() {
  const [state, action, pending] = useActionState(requestResetAction, null);
  if (state?.sent) {
    return (
      <p role="status" data-testid="reset-requested" className="mt-6 rounded-md bg-indigo-50 px-3 py-2 text-sm text-indigo-800">
        If an account uses this address, a link to reset its password is on its way. Check your inbox (and the spam folder).
      </p>
    );
  }
  return (
    <form onSubmit={submitTo(action)} className="mt-6 space-y-4" noValidate>
      <label className="block text-sm font-medium text-slate-700">
        Email
        <input
          name="email"
          type="email"
          autoComplete="email"
          required
          className={inputClass}
          aria-invalid={Boolean(state?.email)}
          aria-describedby="forgot-error"
        />
      </label>
      <FieldError id="forgot-error" message={state?.email ?? state?.form} />
      <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>
        {pending ? "Sending…" : "Send reset link"}
      </button>
    </form>
  );
}
