"use client";
import { submitTo } from "../../submit";
import { useActionState } from "react";
import { buttonClass, FieldError, inputClass } from "../../ui";
import { redeemAction } from "./actions";

export function RedeemForm() {
  const [state, action, pending] = useActionState(redeemAction, null);
  return (
    <form onSubmit={submitTo(action)} className="space-y-3">
      <label className="block text-sm font-medium text-slate-700">
        Code
        <input
          name="code"
          className={`${inputClass} font-mono uppercase`}
          placeholder="WSR-XXXX-XXXX-XXXX-XXXX"
          autoComplete="off"
          aria-invalid={Boolean(state?.error)}
          aria-describedby="redeem-error"
        />
      </label>
      <FieldError id="redeem-error" message={state?.error} />
      {state?.ok && (
        <p role="status" className="text-sm text-emerald-700">
          {state.ok}
        </p>
      )}
      <button type="submit" className={buttonClass} disabled={pending}>
        {pending ? "Redeeming…" : "Redeem"}
      </button>
    </form>
  );
}
