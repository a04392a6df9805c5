"use client";
import { submitTo } from "../../../submit";
import { useActionState } from "react";
import { FieldError, inputClass, quietButtonClass } from "../../../ui";
import { decideAction } from "./actions";

export function DecideForm({ flagId }: { flagId: string }) {
  const [state, action, pending] = useActionState(decideAction, null);
  return (
    <form onSubmit={submitTo(action)} className="space-y-2">
      <input type="hidden" name="flagId" value={flagId} />
      <label className="block text-xs font-medium text-slate-600">
        Note
        <textarea name="note" rows={2} maxLength={1000} className={inputClass} aria-invalid={Boolean(state?.error)} aria-describedby={`note-error-${flagId}`} />
      </label>
      <FieldError id={`note-error-${flagId}`} message={state?.error} />
      <div className="flex gap-2">
        <button type="submit" name="decision" value="approved" className={quietButtonClass} disabled={pending}>
          Approve
        </button>
        <button type="submit" name="decision" value="dismissed" className={quietButtonClass} disabled={pending}>
          Dismiss
        </button>
        <button
          type="submit"
          name="decision"
          value="suspended"
          className={`${quietButtonClass} border-red-300 text-red-700 hover:bg-red-50`}
          disabled={pending}
        >
          Suspend
        </button>
      </div>
    </form>
  );
}
