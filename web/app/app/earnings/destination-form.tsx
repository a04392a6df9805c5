"use client";
import { submitTo } from "../../submit";
import { useActionState } from "react";
import { buttonClass, FieldError, inputClass } from "../../ui";
import { payoutDestinationAction } from "./actions";

export function PayoutDestinationForm({ current, charsMax }: { current: string | null; charsMax: number }) {
  const [state, action, pending] = useActionState(payoutDestinationAction, null);
  return (
    <form onSubmit={submitTo(action)} className="space-y-3">
      <label className="block text-sm font-medium text-slate-700">
        Pay me at <span className="font-normal text-slate-400">(bank account, PayPal address, …; the administrator pays here)</span>
        <input
          name="destination"
          defaultValue={current ?? ""}
          maxLength={charsMax}
          className={inputClass}
          placeholder="IBAN DE89 3704 0044 0532 0130 00"
          aria-invalid={Boolean(state?.error)}
          aria-describedby="destination-error"
        />
      </label>
      <FieldError id="destination-error" message={state?.error} />
      {state?.ok && (
        <p role="status" className="text-sm text-emerald-700">
          {state.ok}
        </p>
      )}
      <button type="submit" className={buttonClass} disabled={pending}>
        {pending ? "Saving…" : "Save destination"}
      </button>
    </form>
  );
}
