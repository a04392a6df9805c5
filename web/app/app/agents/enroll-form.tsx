"use client";
import { submitTo } from "../../submit";
import { useActionState } from "react";
import { buttonClass, CommandBlock, FieldError, inputClass } from "../../ui";
import { enrollAction } from "./actions";

/** The steps an owner runs after "Create enrollment command", each a command block with a copy button. */
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
        <button type="submit" className={`${buttonClass} w-full`} disabled={pending}>
          {pending ? "Creating…" : "Create enrollment command"}
        </button>
      </form>
      {state?.steps && (
        <ol className="mt-4 space-y-3 text-sm" role="status" data-testid="enroll-steps">
          <li>
            <p className="text-slate-600">
              1. On the machine with your provider keys, in the agent&apos;s folder (<code>agent-deno/</code> of this repository, or the agent image), enroll
              it. Single use, valid until {state.expiresAt?.slice(0, 16).replace("T", " ")} UTC:
            </p>
            <CommandBlock testId="enroll-command" text={state.steps.enroll} />
          </li>
          <li>
            <p className="text-slate-600">
              2. Say which keys and models it offers (edit the models to those your keys serve; Azure and more: docs/operations/agent.md):
            </p>
            <CommandBlock testId="config-command" text={state.steps.configure} />
          </li>
          <li>
            <p className="text-slate-600">
              3. Start it with your key in its environment variable. It restarts itself after a crash and shows up online here within seconds:
            </p>
            <CommandBlock testId="start-command" text={state.steps.start} />
          </li>
        </ol>
      )}
    </div>
  );
}
