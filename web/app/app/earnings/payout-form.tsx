"use client";
import { submitTo } from "../../submit";
import { useActionState } from "react";
import { buttonClass, FieldError, inputClass } from "../../ui";
import { payoutAction } from "./actions";

export function PayoutForm() {
  const [state, action, pending] = useActionState(payoutAction, null);
  return (
    <form onSubmit={submitTo(action)} className="space-y-3">
      <label className="block text-sm font-medium text-slate-700">
        Amount ($) <span className="font-normal text-slate-400">(whole cents, at least $0.01)</span>
        <input
          name="amount"
          inputMode="decimal"
          className={inputClass}
          placeholder="25.00"
          aria-invalid={Boolean(state?.error)}
          aria-describedby="payout-error"
        />
      </label>
      <FieldError id="payout-error" message={state?.error} />
      {state?.ok && (
        <p role="status" className="text-sm text-emerald-700">
          {state.ok}
        </p>
      )}
      <button type="submit" className={buttonClass} disabled={pending}>
        {pending ? "Requesting…" : "Request payout"}
      </button>
    </form>
  );
}
