"use client";
import { submitTo } from "../../../submit";
import { useActionState } from "react";
import { buttonClass, FieldError, inputClass } from "../../../ui";
import { batchAction } from "./actions";

export function BatchForm() {
  const [state, action, pending] = useActionState(batchAction, null);
  return (
    <div>
      <form onSubmit={submitTo(action)} className="space-y-3">
        <div className="grid grid-cols-2 gap-3">
          <label className="block text-sm font-medium text-slate-700">
            Value per code ($)
            <input name="amount" inputMode="decimal" className={inputClass} placeholder="5.00" />
          </label>
          <label className="block text-sm font-medium text-slate-700">
            Codes
            <input name="count" inputMode="numeric" defaultValue="10" className={inputClass} />
          </label>
        </div>
        <label className="block text-sm font-medium text-slate-700">
          Expires <span className="font-normal text-slate-400">(optional, UTC date)</span>
          <input name="expires" type="date" className={inputClass} />
        </label>
        <label className="block text-sm font-medium text-slate-700">
          Note
          <input name="note" maxLength={200} className={inputClass} />
        </label>
        <FieldError id="batch-error" message={state?.error} />
        <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>
          {pending ? "Creating…" : "Create codes"}
        </button>
      </form>
      {state?.codes && (
        <div className="mt-4 rounded-lg border border-emerald-200 bg-emerald-50 p-3" role="status">
          <p className="text-sm font-medium text-emerald-800">{state.codes.length} codes created. Copy them now: they are not shown again.</p>
          <textarea
            readOnly
            rows={Math.min(10, state.codes.length)}
            className="mt-2 w-full rounded bg-white p-2 font-mono text-xs"
            data-testid="new-codes"
            value={state.codes.join("\n")}
          />
        </div>
      )}
    </div>
  );
}
