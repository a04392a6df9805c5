/** Display formatting. Money arrives as integer micro-USD (bigint) and is only ever formatted, never computed on. */

/** Money, exactly: "$1,234.50", "$0.000001" — the one formatter, shared with the CLI (gateway/src/billing/money.ts, a module with no imports, so client components can use it). */
export { formatRate as rate, formatUsd as usd, parseUsd } from "@wellspring/gateway/money";

export function count(n: number | bigint): string {
  return n.toLocaleString("en-US");
}

/** "2026-11-29 23:05:01 UTC" */
export function utc(d: Date | string): string {
  const date = typeof d === "string" ? new Date(d) : d;
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

export function utcDate(d: Date | string): string {
  const date = typeof d === "string" ? new Date(d) : d;
  return date.toISOString().slice(0, 10);
}

/** A wait as people say it: "40 seconds" below 90 s, else whole minutes rounded up ("15 minutes"). */
export function waitText(waitMs: number): string {
  const s = Math.max(0, Math.ceil(waitMs / 1000));
  if (s < 90) return `${s} second${s === 1 ? "" : "s"}`;
  const m = Math.ceil(s / 60);
  return `${m} minute${m === 1 ? "" : "s"}`;
}

/** `text` when it is a real calendar date written YYYY-MM-DD (2026-02-30 is not one), else null. */
export function parseUtcDate(text: string | null | undefined): string | null {
  if (!text || !/^\d{4}-\d{2}-\d{2}$/.test(text)) return null;
  const d = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === text ? text : null;
}
