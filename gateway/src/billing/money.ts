/**
 * Money as people read and type it. Amounts are integer micro-USD (`bigint`, 1 USD = 1,000,000) everywhere;
 * this module only turns them into text and back — the one formatter the CLI, the admin API and the portal
 * share. It imports nothing, so the portal's pages can use it without the gateway's server code
 * (`@wellspring/gateway/money`).
 */

export const MICROS_PER_USD = 1_000_000n;
/**
 * Money exactly, as people read it: whole cents with two decimals ("$1,234.50"), anything finer with as many
 * decimals as it has, up to the micro-dollar ("$0.000001", "$4.999877"), so no charge reads as $0.00 and no
 * balance is rounded. Negative amounts get a minus sign ("−$0.12").
 */
export function formatUsd(micros: bigint): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  const whole = (abs / MICROS_PER_USD).toLocaleString("en-US");
  const fraction = (abs % MICROS_PER_USD).toString().padStart(6, "0").replace(/0+$/, "").padEnd(2, "0");
  return `${neg ? "−" : ""}$${whole}.${fraction}`;
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
