import Link from "next/link";
import { redirect } from "next/navigation";
import { requireActor } from "../../../lib/data/actor";
import { earnings, PAYOUT_DESTINATION_CHARS_MAX } from "../../../lib/data/owner";
import { count, usd, utc } from "../../../lib/format";
import { Card, Empty, PageTitle, Stat, Table, tableGapClass } from "../../ui";
import { SpendChart } from "../spend-chart";
import { PayoutForm } from "./payout-form";
import { PayoutDestinationForm } from "./destination-form";

export const metadata = { title: "Earnings — Wellspring" };

/** Days the earnings chart shows, ending today (UTC). */
const EARNINGS_CHART_DAYS = 30;

export default async function EarningsPage() {
  const actor = await requireActor();
  if (!actor.isOwner) redirect("/app");
  const e = await earnings(actor);
  // Every one of the last 30 UTC days, with nothing earned on days without requests (the user's chart does the same).
  const earnedOn = new Map(e.byDay.map((d) => [d.day, d.earningMicros]));
  const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  const days = Array.from({ length: EARNINGS_CHART_DAYS }, (_, i) => {
    const day = new Date(today - (EARNINGS_CHART_DAYS - 1 - i) * 86_400_000).toISOString().slice(0, 10);
    return { day, earningMicros: earnedOn.get(day) ?? 0n };
  });
  return (
    <>
      <PageTitle title="Earnings" subtitle="You earn the official list price × your tier for every request your agents serve. Days are UTC." />
      <div className="grid gap-4 sm:grid-cols-4">
        <Stat label="Available to pay out" value={usd(e.unrequestedMicros)} testId="earnings-available" />
        <Stat label="Held for review" value={usd(e.held.totalMicros)} testId="earnings-held" />
        <Stat label="Payouts pending" value={usd(e.pendingPayoutMicros)} testId="payouts-pending" />
        <Stat label="Paid out" value={usd(e.paidMicros)} />
      </div>
      {e.probation.agents.length > 0 && (
        <div className="mt-4">
          <Card title="Pending: new agents on probation">
            <ul className="space-y-2 text-sm" data-testid="earnings-probation">
              {e.probation.agents.map((a) => (
                <li key={a.agentId}>
                  <span className="font-medium">{usd(a.amountMicros)}</span> earned by <span className="font-mono text-xs">{a.agentId}</span>, available after
                  its probation ends {utc(a.endsAt)}. A new agent&apos;s earnings wait out this period, and it gets a smaller share of traffic meanwhile.
                </li>
              ))}
            </ul>
          </Card>
        </div>
      )}
      {e.held.reasons.length > 0 && (
        <div className="mt-4">
          <Card title="Why earnings are held">
            <ul className="space-y-2 text-sm" data-testid="earnings-held-reasons">
              {e.held.reasons.map((r) => (
                <li key={`${r.text}-${r.since.toISOString()}`}>
                  <span className="font-medium">{usd(r.amountMicros)}</span> from {count(r.requests)} request{r.requests === 1 ? "" : "s"} since {utc(r.since)}:{" "}
                  {r.text}
                </li>
              ))}
            </ul>
          </Card>
        </div>
      )}
      <div className="mt-6 grid gap-4 lg:grid-cols-3">
        <div className="lg:col-span-2">
          <Card title="Earnings per day">
            {e.byDay.length === 0 ? (
              <Empty testId="earnings-empty">
                No earnings yet: they appear once one of your{" "}
                <Link href="/app/agents" className="font-medium text-indigo-600 hover:underline">
                  agents
                </Link>{" "}
                is online and serves requests.
              </Empty>
            ) : (
              <SpendChart
                label="Earnings"
                data={days.map((d) => ({ day: d.day.slice(5), spent: Number(d.earningMicros) / 1e6, label: usd(d.earningMicros) }))}
              />
            )}
          </Card>
        </div>
        <Card title="By model">
          {e.byModel.length === 0 ? (
            <Empty>Earnings per model appear with the first request your agents serve.</Empty>
          ) : (
            <table className={`w-full text-sm ${tableGapClass}`} data-testid="earnings-by-model">
              <tbody>
                {e.byModel.map((m) => (
                  <tr key={m.model} className="border-b border-slate-100 last:border-0">
                    <td className="py-2 font-mono text-xs">{m.model}</td>
                    <td className="py-2 text-right tabular-nums text-slate-500">{count(m.requests)}</td>
                    <td className="py-2 text-right tabular-nums font-medium">{usd(m.earningMicros)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {e.canaryPay.canaries > 0 && (
            <p className="mt-3 text-xs text-slate-500" data-testid="earnings-canaries">
              Also in your balance: {usd(e.canaryPay.micros)} the platform paid for {count(e.canaryPay.canaries)} quality checks your agents answered (short
              test prompts the hub sends to confirm each model answers as itself).
            </p>
          )}
        </Card>
      </div>
      <div className="mt-6 grid gap-4 lg:grid-cols-3">
        <div className="space-y-4">
          <Card title="Request a payout">
            <PayoutForm />
          </Card>
          <Card title="Payout destination">
            <p className="mb-3 text-sm text-slate-500" data-testid="payout-destination">
              {e.payoutDestination ? `Payouts go to: ${e.payoutDestination}` : "Not set: tell the administrator where to pay you."} Accounts that give the same
              destination are treated as linked: earnings on requests between them are held for review.
            </p>
            <PayoutDestinationForm current={e.payoutDestination} charsMax={PAYOUT_DESTINATION_CHARS_MAX} />
          </Card>
        </div>
        <div className="lg:col-span-2">
          <Card title="Payouts">
            {e.payouts.length === 0 ? (
              <Empty>No payouts yet. Request one with the form on this page once you have earnings.</Empty>
            ) : (
              <Table testId="payouts-table" columns={["Requested (UTC)", "Amount", "Status", "Reference"]}>
                {e.payouts.map((p) => (
                  <tr key={p.id} className="border-t border-slate-100">
                    <td className="py-2 text-xs text-slate-500">{utc(p.requestedAt)}</td>
                    <td className="py-2 tabular-nums">{usd(p.amountMicros)}</td>
                    <td className="py-2 text-xs">
                      {p.status === "requested" ? "pending" : p.status}
                      {p.decidedAt && ` · ${utc(p.decidedAt)}`}
                    </td>
                    <td className="py-2 font-mono text-xs">{p.reference ?? "—"}</td>
                  </tr>
                ))}
              </Table>
            )}
          </Card>
        </div>
      </div>
    </>
  );
}
