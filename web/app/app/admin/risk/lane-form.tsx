"use client";
import { submitTo } from "../../../submit";
import { useActionState } from "react";
import { FieldError, inputClass, quietButtonClass } from "../../../ui";
import { laneAction } from "./actions";

export function LaneForm({ agentId }: { agentId: string }) {
  const [state, action, pending] = useActionState(laneAction, null);
  return (
    <form onSubmit={submitTo(action)} className="space-y-2">
      <input type="hidden" name="agentId" value={agentId} />
      <label className="block text-xs font-medium text-slate-600">
        Lane note
        <textarea
          name="note"
          rows={2}
          maxLength={1000}
          className={inputClass}
          aria-invalid={Boolean(state?.error)}
          aria-describedby={`lane-error-${agentId}`}
        />
      </label>
      <FieldError id={`lane-error-${agentId}`} message={state?.error} />
      <div className="flex gap-2">
        <button type="submit" name="decision" value="approve" className={quietButtonClass} disabled={pending}>
          Approve lane
        </button>
        <button type="submit" name="decision" value="refuse" className={`${quietButtonClass} border-red-300 text-red-700 hover:bg-red-50`} disabled={pending}>
          Refuse lane
        </button>
      </div>
    </form>
  );
}
