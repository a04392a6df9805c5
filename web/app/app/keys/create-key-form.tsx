"use client";
import { submitTo } from "../../submit";
import { useActionState, useState } from "react";
import { buttonClass, FieldError, inputClass, quietButtonClass } from "../../ui";
import { createKeyAction } from "./actions";

export function CreateKeyForm() {
  const [state, action, pending] = useActionState(createKeyAction, null);
  const [copied, setCopied] = useState(false);
  const e = state?.errors;
  return (
    <div>
      {state?.secret && (
        <div className="mb-4 rounded-lg border border-emerald-200 bg-emerald-50 p-3" role="status">
          <p className="text-sm font-medium text-emerald-800">Key “{state.name}” created. Copy it now: it will not be shown again.</p>
          <code className="mt-2 block break-all rounded bg-white p-2 font-mono text-xs" data-testid="new-key-secret">{state.secret}</code>
          <button type="button" className={`${quietButtonClass} mt-2`} onClick={() => void navigator.clipboard?.writeText(state.secret!).then(() => setCopied(true))}>
            {copied ? "Copied" : "Copy"}
          </button>
        </div>
      )}
      <form onSubmit={submitTo(action)} className="space-y-3" noValidate>
        <label className="block text-sm font-medium text-slate-700">
          Name
          <input name="name" required maxLength={60} className={inputClass} placeholder="laptop" aria-invalid={Boolean(e?.name)} aria-describedby="key-name-error" />
        </label>
        <FieldError id="key-name-error" message={e?.name} />
        <label className="block text-sm font-medium text-slate-700">
          Allowed models <span className="font-normal text-slate-400">(optional, comma-separated)</span>
          <input name="models" className={inputClass} placeholder="gpt-4o-mini, claude-haiku-4-5" aria-invalid={Boolean(e?.allowedModels)} aria-describedby="key-models-error" />
        </label>
        <FieldError id="key-models-error" message={e?.allowedModels} />
        <div className="grid grid-cols-2 gap-3">
          <label className="block text-sm font-medium text-slate-700">
            Requests / min
            <input name="rpm" inputMode="numeric" className={inputClass} placeholder="no limit" aria-invalid={Boolean(e?.rpmLimit)} aria-describedby="key-rpm-error" />
          </label>
          <label className="block text-sm font-medium text-slate-700">
            Budget / month ($)
            <input name="budget" inputMode="decimal" className={inputClass} placeholder="no limit" aria-invalid={Boolean(e?.monthlyBudgetMicros)} aria-describedby="key-budget-error" />
          </label>
        </div>
        <FieldError id="key-rpm-error" message={e?.rpmLimit} />
        <FieldError id="key-budget-error" message={e?.monthlyBudgetMicros} />
        <label className="block text-sm font-medium text-slate-700">
          Expires <span className="font-normal text-slate-400">(optional, UTC date)</span>
          <input name="expires" type="date" className={inputClass} aria-invalid={Boolean(e?.expiresAt)} aria-describedby="key-expires-error" />
        </label>
        <FieldError id="key-expires-error" message={e?.expiresAt} />
        <FieldError id="key-form-error" message={e?.form} />
        <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>{pending ? "Creating…" : "Create key"}</button>
      </form>
    </div>
  );
}
