"use client";
import { submitTo } from "../../submit";
import { useActionState } from "react";
import { buttonClass, FieldError, inputClass } from "../../ui";
import { enrollAction } from "./actions";

export function EnrollForm() {
  const [state, action, pending] = useActionState(enrollAction, null);
  return (
    <div>
      <form onSubmit={submitTo(action)} className="space-y-3">
        <label className="block text-sm font-medium text-slate-700">
          Agent name
          <input name="label" maxLength={60} className={inputClass} placeholder="office-agent" />
        </label>
        <FieldError id="enroll-error" message={state?.error} />
        <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>{pending ? "Creating…" : "Create enrollment command"}</button>
      </form>
      {state?.command && (
        <div className="mt-4 space-y-2 text-sm" role="status">
          <p className="text-slate-600">On the machine with your provider keys, in the agent&apos;s folder (<code>agent-deno/</code>), run (single use, valid until {state.expiresAt?.slice(0, 16).replace("T", " ")} UTC):</p>
          <pre className="overflow-x-auto rounded-lg bg-slate-900 p-3 text-xs text-slate-100"><code data-testid="enroll-command">{state.command}</code></pre>
          <p className="text-slate-600">Then put your providers and models in <code>data/config.json</code> and start it with <code>./wellspring-agent start</code> (docs/operations/agent.md).</p>
        </div>
      )}
    </div>
  );
}
