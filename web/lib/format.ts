/** Display formatting. Money arrives as integer micro-USD (bigint) and is only ever formatted, never computed on. */

/** "$1,234.56" — two decimals, or up to six for amounts under a cent so small charges are not shown as $0.00. */
export function usd(micros: bigint): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  const whole = abs / 1_000_000n;
  const frac = (abs % 1_000_000n).toString().padStart(6, "0");
  const decimals = abs > 0n && abs < 10_000n ? frac.replace(/0+$/, "").padEnd(2, "0") : frac.slice(0, 2);
  return `${neg ? "−" : ""}$${whole.toLocaleString("en-US")}.${decimals}`;
}

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

/** Micro-USD from a dollar amount typed by a person ("25", "12.50", up to 6 decimals); null when it is not one. */
export function parseUsd(text: string): bigint | null {
  const m = /^(\d{1,9})(?:\.(\d{1,6}))?$/.exec(text.trim());
  return m ? BigInt(m[1]!) * 1_000_000n + BigInt((m[2] ?? "").padEnd(6, "0")) : null;
}

/** A price in dollars with at least two decimals and up to six, no trailing zeros ("0.15", "0.075"). */
export function rate(micros: bigint): string {
  return `${micros / 1_000_000n}.${(micros % 1_000_000n).toString().padStart(6, "0")}`.replace(/(\.\d\d\d*?)0+$/, "$1");
}

/** A wait as people say it: "40 seconds" below 90 s, else whole minutes rounded up ("15 minutes"). */
export function waitText(waitMs: number): string {
  const s = Math.max(0, Math.ceil(waitMs / 1000));
  if (s < 90) return `${s} second${s === 1 ? "" : "s"}`;
  const m = Math.ceil(s / 60);
  return `${m} minute${m === 1 ? "" : "s"}`;
}
