import Link from "next/link";
import { requireActor } from "../../lib/data/actor";
import { balance, spendByDay, spendByModel } from "../../lib/data/usage";
import { count, usd } from "../../lib/format";
import { Card, Empty, PageTitle, Stat, tableGapClass } from "../ui";
import { SpendChart } from "./spend-chart";

export const metadata = { title: "Dashboard — Wellspring" };

export default async function Dashboard() {
  const actor = await requireActor();
  const [b, days, models] = await Promise.all([balance(actor), spendByDay(actor, 30), spendByModel(actor, 30)]);
  const requests = days.reduce((n, d) => n + d.requests, 0);
  const spent30 = days.reduce((n, d) => n + d.spentMicros, 0n);
  return (
    <>
      <PageTitle title="Dashboard" subtitle="Your balance and spend over the last 30 days (UTC)." />
      <div className="grid gap-4 sm:grid-cols-3">
        <Stat
          label="Balance"
          value={usd(b.availableMicros + b.reservedMicros)}
          hint={b.reservedMicros > 0n ? `${usd(b.reservedMicros)} of it held for requests in flight` : "Nothing held right now"}
          testId="balance"
        />
        <Stat label="Spend, 30 days" value={usd(spent30)} hint={`${count(requests)} billed ${requests === 1 ? "request" : "requests"}`} testId="spend-30d" />
        <Stat label="Spend, all time" value={usd(b.spentMicros)} />
      </div>
      <div className="mt-6 grid gap-4 lg:grid-cols-3">
        <div className="lg:col-span-2">
          <Card title="Spend per day">
            {requests === 0 ? (
              <Empty testId="dashboard-empty">
                No billed requests yet.{" "}
                <Link href="/app/keys" className="font-medium text-indigo-600 hover:underline">
                  Create an API key
                </Link>
                , top up on{" "}
                <Link href="/app/billing" className="font-medium text-indigo-600 hover:underline">
                  Billing
                </Link>
                , and make your first call.
              </Empty>
            ) : (
              <SpendChart data={days.map((d) => ({ day: d.day.slice(5), spent: Number(d.spentMicros) / 1e6, label: usd(d.spentMicros) }))} />
            )}
          </Card>
        </div>
        <Card title="By model">
          {models.length === 0 ? (
            <Empty>Spend per model appears after your first call.</Empty>
          ) : (
            <table className={`w-full text-sm ${tableGapClass}`} data-testid="spend-by-model">
              <tbody>
                {models.map((m) => (
                  <tr key={m.model} className="border-b border-slate-100 last:border-0">
                    <td className="py-2 font-mono text-xs text-slate-700">{m.model}</td>
                    <td className="py-2 text-right tabular-nums text-slate-500">{count(m.requests)}</td>
                    <td className="py-2 text-right tabular-nums font-medium">{usd(m.spentMicros)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Card>
      </div>
    </>
  );
}
