"use client";
import { submitTo } from "../../../submit";
import { useActionState } from "react";
import { FieldError, inputClass, quietButtonClass } from "../../../ui";
import { flagAction } from "./actions";

/** The actions a flag's page offers now: only those that would change something. */
export interface ActChoices {
  hold: boolean;
  release: boolean;
  suspend: boolean;
  unsuspend: boolean;
  /** What the subject is, for the buttons' labels: user, agent or key. */
  subjectType: string;
}

export function ActForm({ flagId, choices }: { flagId: string; choices: ActChoices }) {
  const [state, action, pending] = useActionState(flagAction, null);
  const danger = `${quietButtonClass} border-red-300 text-red-700 hover:bg-red-50`;
  return (
    <form onSubmit={submitTo(action)} className="space-y-2" data-testid="flag-actions">
      <input type="hidden" name="flagId" value={flagId} />
      <label className="block text-xs font-medium text-slate-600">
        Note for the action
        <textarea name="note" rows={2} maxLength={1000} className={inputClass} aria-invalid={Boolean(state?.error)} aria-describedby="act-error" />
      </label>
      <FieldError id="act-error" message={state?.error} />
      {state?.done && (
        <p className="text-sm text-emerald-700" role="status">
          {state.done}
        </p>
      )}
      <div className="flex flex-wrap gap-2">
        {choices.hold && (
          <button type="submit" name="action" value="hold_earnings" className={danger} disabled={pending}>
            Hold available earnings
          </button>
        )}
        {choices.release && (
          <button type="submit" name="action" value="release_earnings" className={quietButtonClass} disabled={pending}>
            Release held earnings
          </button>
        )}
        {choices.suspend && (
          <button type="submit" name="action" value="suspend_subject" className={danger} disabled={pending}>
            Suspend {choices.subjectType}
          </button>
        )}
        {choices.unsuspend && (
          <button type="submit" name="action" value="unsuspend_subject" className={quietButtonClass} disabled={pending}>
            Reinstate {choices.subjectType}
          </button>
        )}
      </div>
    </form>
  );
}
