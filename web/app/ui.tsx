import type { ReactNode } from "react";
import { buttonClass, inputClass, quietButtonClass, tableGapClass } from "./classes";
import { CopyButton } from "./client-ui";

export function Card({ title, children, action }: { title?: string; children: ReactNode; action?: ReactNode }) {
  return (
    <section className="min-w-0 rounded-xl border border-slate-200 bg-white p-4 shadow-sm sm:p-5">
      {title && (
        <div className="mb-4 flex items-center justify-between">
          <h2 className="text-sm font-semibold text-slate-700">{title}</h2>
          {action}
        </div>
      )}
      {children}
    </section>
  );
}

export function Stat({ label, value, hint, testId }: { label: string; value: string; hint?: string; testId?: string }) {
  return (
    <div className="rounded-xl border border-slate-200 bg-white p-5 shadow-sm">
      <div className="text-xs font-medium uppercase tracking-wide text-slate-500">{label}</div>
      <div className="mt-2 text-2xl font-semibold tabular-nums text-slate-900" data-testid={testId}>
        {value}
      </div>
      {hint && <div className="mt-1 text-xs text-slate-500">{hint}</div>}
    </div>
  );
}

export function Empty({ children, testId }: { children: ReactNode; testId?: string }) {
  return (
    <div data-testid={testId} className="rounded-lg border border-dashed border-slate-300 px-4 py-8 text-center text-sm text-slate-500">
      {children}
    </div>
  );
}

/** A command or snippet the portal prints, in a scrolling block with a copy button. */
export function CommandBlock({ text, testId, label }: { text: string; testId?: string; label?: string }) {
  return (
    <div className="relative min-w-0">
      <pre className="overflow-x-auto rounded-lg bg-slate-900 p-3 pr-20 text-xs leading-relaxed text-slate-100">
        <code data-testid={testId}>{text}</code>
      </pre>
      <CopyButton text={text} label={label} className="absolute right-2 top-2 !px-2 !py-1 text-xs" />
    </div>
  );
}

export function PageTitle({ title, subtitle }: { title: string; subtitle?: string }) {
  return (
    <div className="mb-6">
      <h1 className="text-2xl font-semibold tracking-tight text-slate-900">{title}</h1>
      {subtitle && <p className="mt-1 text-sm text-slate-500">{subtitle}</p>}
    </div>
  );
}

export { buttonClass, inputClass, quietButtonClass, tableGapClass };

export function FieldError({ id, message }: { id: string; message?: string }) {
  if (!message) return null;
  return (
    <p id={id} role="alert" className="mt-1 text-xs text-red-600">
      {message}
    </p>
  );
}

/**
 * A data table with a header row; columns marked `right` are right-aligned (numbers). Every cell but the last of
 * a row keeps 1 rem from the next, so neighbouring columns never touch; a table wider than the screen scrolls
 * inside its card, never the page.
 */
export function Table({ columns, testId, children }: { columns: (string | { label: string; right?: boolean })[]; testId?: string; children: ReactNode }) {
  return (
    <div className="-mx-1 overflow-x-auto px-1">
      <table className={`w-full text-sm ${tableGapClass}`} data-testid={testId}>
        <thead className="text-left text-xs uppercase tracking-wide text-slate-500">
          <tr>
            {columns.map((c, i) => {
              const col = typeof c === "string" ? { label: c } : c;
              return (
                <th key={i} className={`whitespace-nowrap pb-2 font-semibold ${col.right ? "text-right" : ""}`}>
                  {col.label}
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

/** One button posting fixed fields to a server action (revoke, pause, suspend, …). */
export function ActionButton({
  action,
  fields,
  label,
  ariaLabel,
  danger,
}: {
  action: (form: FormData) => Promise<void>;
  fields: Record<string, string>;
  label: string;
  ariaLabel?: string;
  danger?: boolean;
}) {
  return (
    <form action={action}>
      {Object.entries(fields).map(([name, value]) => (
        <input key={name} type="hidden" name={name} value={value} />
      ))}
      <button type="submit" aria-label={ariaLabel} className={`${quietButtonClass} ${danger ? "border-red-300 text-red-700 hover:bg-red-50" : ""}`}>
        {label}
      </button>
    </form>
  );
}
