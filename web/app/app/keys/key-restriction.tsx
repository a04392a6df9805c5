"use client";
import { useActionState } from "react";
import { submitTo } from "../../submit";
import { FieldError, inputClass, quietButtonClass } from "../../ui";
import type { KeyErrors } from "../../../lib/data/keys";
import { restrictKeyAction } from "./actions";

/**
 * Which agents may serve a key: their owners, named by the email of their account, and the lowest tier
 * (S above A; A excludes the discount lane). Empty owners and "any tier" = every agent.
 */
export function RestrictionFields({
  idPrefix,
  errors,
  owners = "",
  minTier = "",
}: {
  idPrefix: string;
  errors?: KeyErrors;
  owners?: string;
  minTier?: string;
}) {
  return (
    <>
      <label className="block text-sm font-medium text-slate-700">
        Agent owners <span className="font-normal text-slate-400">(optional, emails; empty = any owner)</span>
        <input
          name="owners"
          defaultValue={owners}
          autoComplete="off"
          className={inputClass}
          placeholder="agents@company.com"
          aria-invalid={Boolean(errors?.allowedOwners)}
          aria-describedby={`${idPrefix}-owners-error`}
        />
      </label>
      <FieldError id={`${idPrefix}-owners-error`} message={errors?.allowedOwners} />
      <label className="block text-sm font-medium text-slate-700">
        Minimum agent tier
        <select
          name="minTier"
          defaultValue={minTier}
          className={inputClass}
          aria-invalid={Boolean(errors?.minAgentTier)}
          aria-describedby={`${idPrefix}-tier-error`}
        >
          <option value="">Any tier</option>
          <option value="A">A or S (no discount lane)</option>
          <option value="S">S only</option>
        </select>
      </label>
      <FieldError id={`${idPrefix}-tier-error`} message={errors?.minAgentTier} />
    </>
  );
}

/** The edit form for an existing key's restriction, folded under the key's row. */
export function EditKeyRestriction({ keyId, keyName, owners, minTier }: { keyId: string; keyName: string; owners: string[]; minTier: "S" | "A" | null }) {
  const [state, action, pending] = useActionState(restrictKeyAction, null);
  const e = state?.errors;
  return (
    <details data-testid="key-restriction-edit">
      <summary className="cursor-pointer text-indigo-600">Edit which agents serve “{keyName}”</summary>
      <form onSubmit={submitTo(action)} className="mt-2 max-w-md space-y-2" noValidate aria-label={`Agents for ${keyName}`}>
        <input type="hidden" name="keyId" value={keyId} />
        <RestrictionFields idPrefix={`key-${keyId}`} errors={e} owners={owners.join(", ")} minTier={minTier ?? ""} />
        <FieldError id={`key-${keyId}-form-error`} message={e?.form} />
        <button type="submit" className={quietButtonClass} disabled={pending}>
          {pending ? "Saving…" : "Save"}
        </button>
        {state?.saved && !pending && (
          <span className="ml-2 text-xs text-emerald-700" role="status">
            Saved: the next request follows it.
          </span>
        )}
      </form>
    </details>
  );
}
