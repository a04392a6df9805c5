/**
 * Money as people read and type it. Amounts are integer micro-USD (`bigint`, 1 USD = 1,000,000) everywhere;
 * this module only turns them into text and back — the one formatter the CLI, the admin API and the portal
 * share. It imports nothing, so the portal's pages can use it without the gateway's server code
 * (`@wellspring/gateway/money`).
 */

export const MICROS_PER_USD = 1_000_000n;
/** Below this (one cent), amounts are shown to the micro-dollar, so a small charge never reads as $0.00. */
const CENT_MICROS = 10_000n;

/**
 * "$1,234.56" — two decimals, or as many as the amount needs (up to six) under a cent: "$0.000435".
 * `exact` shows every micro-dollar the amount has ("$2.500123", but still "$2.50"): for operators and ledgers.
 * Negative amounts get a minus sign ("−$0.25").
 */
export function formatUsd(micros: bigint, { exact = false }: { exact?: boolean } = {}): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  const whole = abs / MICROS_PER_USD;
  const frac = (abs % MICROS_PER_USD).toString().padStart(6, "0");
  const decimals = exact || (abs > 0n && abs < CENT_MICROS) ? frac.replace(/0+$/, "").padEnd(2, "0") : frac.slice(0, 2);
  return `${neg ? "−" : ""}$${whole.toLocaleString("en-US")}.${decimals}`;
}

/** A price in dollars with at least two decimals and up to six, no trailing zeros ("0.15", "0.075", "10.00"). */
export function formatRate(micros: bigint): string {
  return `${micros / MICROS_PER_USD}.${(micros % MICROS_PER_USD).toString().padStart(6, "0")}`.replace(/(\.\d\d\d*?)0+$/, "$1");
}

/** Micro-USD from a dollar amount typed by a person ("25", "12.50", "0.000001"; at most 6 decimals), or null. */
export function parseUsd(text: string): bigint | null {
  const m = /^\$?(\d{1,12})(?:\.(\d{1,6}))?$/.exec(text.trim());
  return m ? BigInt(m[1]!) * MICROS_PER_USD + BigInt((m[2] ?? "").padEnd(6, "0")) : null;
}
