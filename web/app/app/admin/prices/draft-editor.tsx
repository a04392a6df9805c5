"use client";
import { submitTo } from "../../../submit";
import { useActionState, useState } from "react";
import { buttonClass, FieldError, inputClass, quietButtonClass } from "../../../ui";
import { draftAction } from "./actions";

export function DraftEditor({ initial }: { initial: string }) {
  const [state, action, pending] = useActionState(draftAction, null);
  // Controlled, so the draft survives "Show difference" (React resets uncontrolled fields after a form action).
  const [draft, setDraft] = useState(initial);
  const [note, setNote] = useState("");
  return (
    <form onSubmit={submitTo(action)} className="space-y-3">
      <label className="block text-sm font-medium text-slate-700">
        Prices
        <textarea
          name="draft"
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          rows={16}
          spellCheck={false}
          className={`${inputClass} font-mono text-xs`}
          aria-invalid={Boolean(state?.error)}
          aria-describedby="draft-error"
        />
      </label>
      <label className="block text-sm font-medium text-slate-700">
        Note <span className="font-normal text-slate-400">(shown in the version history)</span>
        <input name="note" value={note} onChange={(e) => setNote(e.target.value)} maxLength={200} className={inputClass} />
      </label>
      <FieldError id="draft-error" message={state?.error} />
      {state?.published && (
        <p role="status" className="text-sm font-medium text-emerald-700">
          Published version {state.published}.
        </p>
      )}
      {state?.diff && (
        <div data-testid="price-diff" className="rounded-lg border border-slate-200">
          {state.diff.length === 0 ? (
            <p className="p-3 text-sm text-slate-500">No difference from the current version.</p>
          ) : (
            <div className="overflow-x-auto">
              <table className="w-full text-xs">
                <thead className="bg-slate-50 text-left text-slate-500">
                  <tr>
                    <th className="p-2">Model</th>
                    <th className="p-2">Change</th>
                    <th className="p-2">Before (USD per 1M tokens: input / output / cached)</th>
                    <th className="p-2">After</th>
                  </tr>
                </thead>
                <tbody>
                  {state.diff.map((d) => (
                    <tr key={d.key} className="border-t border-slate-100">
                      <td className="p-2 font-mono">{d.key}</td>
                      <td className={`p-2 ${d.change === "removed" ? "text-red-600" : d.change === "added" ? "text-emerald-700" : "text-amber-700"}`}>
                        {d.change}
                      </td>
                      <td className="p-2 tabular-nums">{d.before}</td>
                      <td className="p-2 tabular-nums">{d.after}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </div>
      )}
      <div className="flex gap-2">
        <button type="submit" name="intent" value="preview" className={quietButtonClass} disabled={pending}>
          Show difference
        </button>
        <button type="submit" name="intent" value="publish" className={buttonClass} disabled={pending}>
          Publish new version
        </button>
      </div>
    </form>
  );
}
