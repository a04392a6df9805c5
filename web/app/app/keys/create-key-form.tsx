"use client";
import { submitTo } from "../../submit";
import { useActionState, useEffect, useRef, useState } from "react";
import { CopyButton } from "../../client-ui";
import { buttonClass, FieldError, inputClass, quietButtonClass } from "../../ui";
import { createKeyAction } from "./actions";
import { RestrictionFields } from "./key-restriction";

/** The form, and the new key's secret once (hidden when dismissed or when that key is revoked). */
export function CreateKeyForm({ activeKeyIds }: { activeKeyIds: string[] }) {
  const [state, action, pending] = useActionState(createKeyAction, null);
  const [dismissed, setDismissed] = useState<string | null>(null);
  const form = useRef<HTMLFormElement>(null);
  // A created key clears the form for the next one.
  useEffect(() => {
    if (state?.keyId) form.current?.reset();
  }, [state?.keyId]);
  const e = state?.errors;
  const shown = state?.secret && state.keyId && dismissed !== state.keyId && activeKeyIds.includes(state.keyId) ? state : null;
  return (
    <div>
      {shown && (
        <div className="mb-4 rounded-lg border border-emerald-200 bg-emerald-50 p-3" role="status" data-testid="new-key-panel">
          <p className="break-words text-sm font-medium text-emerald-800">Key “{shown.name}” created. Copy it now: it will not be shown again.</p>
          <code className="mt-2 block break-all rounded bg-white p-2 font-mono text-xs" data-testid="new-key-secret">
            {shown.secret}
          </code>
          <div className="mt-2 flex gap-2">
            <CopyButton text={shown.secret!} />
            <button type="button" className={quietButtonClass} onClick={() => setDismissed(shown.keyId!)}>
              I have stored it
            </button>
          </div>
        </div>
      )}
      <form ref={form} onSubmit={submitTo(action)} className="space-y-3" noValidate aria-label="Create a key">
        <label className="block text-sm font-medium text-slate-700">
          Name
          <input
            name="name"
            required
            maxLength={60}
            autoComplete="off"
            className={inputClass}
            placeholder="laptop"
            aria-invalid={Boolean(e?.name)}
            aria-describedby="key-name-error"
          />
        </label>
        <FieldError id="key-name-error" message={e?.name} />
        <label className="block text-sm font-medium text-slate-700">
          Allowed models <span className="font-normal text-slate-400">(optional, comma-separated)</span>
          <input
            name="models"
            className={inputClass}
            placeholder="gpt-4o-mini, claude-haiku-4-5"
            aria-invalid={Boolean(e?.allowedModels)}
            aria-describedby="key-models-error"
          />
        </label>
        <FieldError id="key-models-error" message={e?.allowedModels} />
        <div className="grid grid-cols-2 gap-3">
          <LimitInput label="Requests / min" name="rpm" error={e?.rpmLimit} />
          <LimitInput label="Budget / month ($)" name="budget" error={e?.monthlyBudgetMicros} decimal />
          <LimitInput label="Tokens / min" name="tpm" error={e?.tpmLimit} />
          <LimitInput label="Requests at once" name="concurrency" error={e?.concurrencyLimit} />
        </div>
        {(["rpm", "budget", "tpm", "concurrency"] as const).map((name) => (
          <FieldError
            key={name}
            id={`key-${name}-error`}
            message={{ rpm: e?.rpmLimit, budget: e?.monthlyBudgetMicros, tpm: e?.tpmLimit, concurrency: e?.concurrencyLimit }[name]}
          />
        ))}
        <label className="block text-sm font-medium text-slate-700">
          Expires <span className="font-normal text-slate-400">(optional, UTC date)</span>
          <input name="expires" type="date" className={inputClass} aria-invalid={Boolean(e?.expiresAt)} aria-describedby="key-expires-error" />
        </label>
        <FieldError id="key-expires-error" message={e?.expiresAt} />
        <RestrictionFields idPrefix="key" errors={e} />
        <FieldError id="key-form-error" message={e?.form} />
        <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>
          {pending ? "Creating…" : "Create key"}
        </button>
      </form>
    </div>
  );
}

/** One of the key's optional limits; empty = no limit. */
function LimitInput({ label, name, error, decimal = false }: { label: string; name: string; error: string | undefined; decimal?: boolean }) {
  return (
    <label className="block text-sm font-medium text-slate-700">
      {label}
      <input
        name={name}
        inputMode={decimal ? "decimal" : "numeric"}
        className={inputClass}
        placeholder="no limit"
        aria-invalid={Boolean(error)}
        aria-describedby={`key-${name}-error`}
      />
    </label>
  );
}
