"use client";
import { submitTo } from "../../../submit";
import { useActionState } from "react";
import { FieldError, quietButtonClass } from "../../../ui";
import { decidePayoutAction } from "./actions";

export function DecidePayout({ payoutId }: { payoutId: string }) {
  const [state, action, pending] = useActionState(decidePayoutAction, null);
  return (
    <form onSubmit={submitTo(action)} className="flex flex-wrap items-center justify-end gap-1">
      <input type="hidden" name="payoutId" value={payoutId} />
      <input name="reference" aria-label="Payment reference" placeholder="payment reference" className="w-40 rounded border border-slate-300 px-2 py-1 text-xs" />
      <button type="submit" name="decision" value="paid" className={quietButtonClass} disabled={pending}>Mark paid</button>
      <button type="submit" name="decision" value="cancelled" className={quietButtonClass} disabled={pending}>Cancel</button>
      <FieldError id={`payout-error-${payoutId}`} message={state?.error} />
    </form>
  );
}
