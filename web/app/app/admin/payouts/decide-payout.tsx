"use client";
import { submitTo } from "../../../submit";
import { useActionState, useState } from "react";
import { FieldError, quietButtonClass } from "../../../ui";
import { decidePayoutAction } from "./actions";

/** Mark paid (with the payment reference) or cancel; cancelling gives the money back to the owner and asks first. */
export function DecidePayout({ payoutId }: { payoutId: string }) {
  const [state, action, pending] = useActionState(decidePayoutAction, null);
  const [cancelling, setCancelling] = useState(false);
  return (
    <form onSubmit={submitTo(action)} className="flex flex-wrap items-center justify-end gap-1">
      <input type="hidden" name="payoutId" value={payoutId} />
      {cancelling ? (
        <>
          <span className="text-xs text-slate-600">Cancel it? The amount goes back to the owner&apos;s earnings.</span>
          <button
            type="submit"
            name="decision"
            value="cancelled"
            className={`${quietButtonClass} border-red-400 bg-red-600 text-white hover:bg-red-500`}
            disabled={pending}
          >
            Yes, cancel payout
          </button>
          <button type="button" className={quietButtonClass} onClick={() => setCancelling(false)}>
            Keep
          </button>
        </>
      ) : (
        <>
          <input
            name="reference"
            aria-label="Payment reference"
            placeholder="payment reference"
            className="w-40 rounded border border-slate-300 px-2 py-1 text-xs"
          />
          <button type="submit" name="decision" value="paid" className={quietButtonClass} disabled={pending}>
            Mark paid
          </button>
          <button type="button" className={`${quietButtonClass} border-red-300 text-red-700 hover:bg-red-50`} onClick={() => setCancelling(true)}>
            Cancel
          </button>
        </>
      )}
      <FieldError id={`payout-error-${payoutId}`} message={state?.error} />
    </form>
  );
}
