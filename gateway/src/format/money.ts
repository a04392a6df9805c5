/**
 * The one money formatter: the portal and the operator CLI show amounts with it. Amounts are
 * integer micro-USD and are shown exactly: whole cents with two decimals ("$1,234.50"), anything finer with as
 * many decimals as it has, up to the micro-dollar ("$0.000001", "$4.999877"), so no charge reads as $0.00 and
 * no balance is rounded.
 */
export function formatUsd(micros: bigint): string {
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  const whole = (abs / 1_000_000n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const fraction = (abs % 1_000_000n).toString().padStart(6, "0").replace(/0+$/, "").padEnd(2, "0");
  return `${negative ? "−" : ""}$${whole}.${fraction}`;
}
