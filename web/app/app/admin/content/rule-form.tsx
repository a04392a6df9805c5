"use client";
import { useActionState } from "react";
import { submitTo } from "../../../submit";
import { buttonClass, FieldError, inputClass } from "../../../ui";
import { addRuleAction } from "./actions";

export function RuleForm() {
  const [state, action, pending] = useActionState(addRuleAction, null);
  return (
    <form onSubmit={submitTo(action)} className="grid gap-3 sm:grid-cols-[10rem_1fr_auto] sm:items-end" data-testid="content-rule-form">
      <label className="block text-sm font-medium text-slate-700">
        List
        <input name="list" defaultValue="default" maxLength={40} className={inputClass} />
      </label>
      <label className="block text-sm font-medium text-slate-700">
        Term
        <input name="term" maxLength={200} className={inputClass} aria-invalid={Boolean(state?.error)} aria-describedby="term-error" />
      </label>
      <button type="submit" className={buttonClass} disabled={pending}>
        {pending ? "Adding…" : "Add term"}
      </button>
      <div className="sm:col-span-3">
        <FieldError id="term-error" message={state?.error} />
      </div>
    </form>
  );
}
