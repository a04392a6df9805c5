/** Display formatting. Money arrives as integer micro-USD (bigint) and is only ever formatted, never computed on. */
// Money: the one formatter the hub's CLI and admin API use too.
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
