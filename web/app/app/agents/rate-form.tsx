"use client";
import { useActionState, useState } from "react";
import { submitTo } from "../../submit";
import { FieldError, inputClass, quietButtonClass } from "../../ui";
import { agentRateAction } from "./actions";

export interface RateFormProps {
  agentId: string;
  rateMode: "auto" | "expert";
  rpmLimit: number | null;
  tpmLimit: number | null;
  concurrencyLimit: number | null;
}

/**
 * The agent's rate mode: auto (the agent learns the provider's limits from its answers) or expert (the owner's
 * requests per minute, tokens per minute and requests at once, which the hub and the agent itself hold to).
 */
export function RateForm(props: RateFormProps) {
  const [state, action, pending] = useActionState(agentRateAction, null);
  const [mode, setMode] = useState(props.rateMode);
  const e = state?.errors;
  const id = (name: string) => `rate-${name}-${props.agentId}`;
  return (
    <form onSubmit={submitTo(action)} className="mt-2 space-y-2 text-left" noValidate data-testid={`agent-rate-form-${props.agentId}`}>
      <input type="hidden" name="agentId" value={props.agentId} />
      <fieldset className="flex gap-3 text-xs">
        <legend className="sr-only">Rate mode</legend>
        {(["auto", "expert"] as const).map((m) => (
          <label key={m} className="flex items-center gap-1">
            <input type="radio" name="rateMode" value={m} checked={mode === m} onChange={() => setMode(m)} />
            {m === "auto" ? "Auto" : "Expert"}
          </label>
        ))}
      </fieldset>
      {mode === "expert" && (
        <div className="grid grid-cols-3 gap-2">
          {(
            [
              ["rpm", "Requests / min", props.rpmLimit],
              ["tpm", "Tokens / min", props.tpmLimit],
              ["concurrency", "At once", props.concurrencyLimit],
            ] as const
          ).map(([name, label, value]) => (
            <label key={name} className="block text-xs font-medium text-slate-700">
              {label}
              <input
                name={name}
                inputMode="numeric"
                defaultValue={value ?? ""}
                placeholder="none"
                className={inputClass}
                aria-invalid={Boolean(e?.[name])}
                aria-describedby={id(name)}
              />
            </label>
          ))}
        </div>
      )}
      {(["rateMode", "rpm", "tpm", "concurrency", "form"] as const).map((name) => (
        <FieldError key={name} id={id(name)} message={e?.[name]} />
      ))}
      <button type="submit" className={quietButtonClass} disabled={pending}>
        {pending ? "Saving…" : "Save rate mode"}
      </button>
      {state?.saved && (
        <span role="status" className="ml-2 text-xs text-emerald-700">
          Saved: sent to the agent.
        </span>
      )}
    </form>
  );
}
