"use client";
import { useState } from "react";
import { quietButtonClass } from "./classes";

/** Copies `text` to the clipboard; says "Copied" for a moment. */
export function CopyButton({ text, label = "Copy", className = "" }: { text: string; label?: string; className?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      className={`${quietButtonClass} ${className}`}
      onClick={() => {
        void navigator.clipboard?.writeText(text).then(() => {
          setCopied(true);
          setTimeout(() => setCopied(false), 2_000);
        });
      }}
    >
      {copied ? "Copied" : label}
    </button>
  );
}

/**
 * A destructive action in two steps: the first click asks, the second (on "Yes, …") submits the form's server
 * action; "Keep" goes back. No native dialog, so it works the same on a phone.
 */
export function ConfirmAction({
  action,
  fields,
  label,
  confirmLabel,
  question,
  ariaLabel,
}: {
  action: (form: FormData) => Promise<void>;
  fields: Record<string, string>;
  label: string;
  confirmLabel: string;
  question: string;
  ariaLabel?: string;
}) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return (
      <button
        type="button"
        aria-label={ariaLabel}
        className={`${quietButtonClass} border-red-300 text-red-700 hover:bg-red-50`}
        onClick={() => setAsking(true)}
      >
        {label}
      </button>
    );
  }
  return (
    <form action={action} className="inline-flex flex-wrap items-center justify-end gap-2" role="group" aria-label={question}>
      {Object.entries(fields).map(([name, value]) => (
        <input key={name} type="hidden" name={name} value={value} />
      ))}
      <span className="text-xs text-slate-600">{question}</span>
      <button type="submit" className={`${quietButtonClass} border-red-400 bg-red-600 text-white hover:bg-red-500`}>
        {confirmLabel}
      </button>
      <button type="button" className={quietButtonClass} onClick={() => setAsking(false)}>
        Keep
      </button>
    </form>
  );
}
