import { redirect } from "next/navigation";
import { gatewayStatus } from "../../../gateway-status";
import { requireActor } from "../../../../lib/data/actor";
import { systemStatus } from "../../../../lib/data/admin";
import { count, usd, utc } from "../../../../lib/format";
import { Card, PageTitle, Stat, tableGapClass } from "../../../ui";

export const metadata = { title: "System — Wellspring admin" };

export default async function SystemPage() {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const [s, gw] = await Promise.all([systemStatus(actor), gatewayStatus()]);
  return (
    <>
      <PageTitle title="System" subtitle={`Checked ${utc(gw.checkedAt)}.`} />
      {s.limitsDegraded.length > 0 && (
        <div role="alert" data-testid="limits-degraded" className="mb-4 rounded-lg border border-red-200 bg-red-50 p-3 text-sm text-red-800">
          <p className="font-medium">Redis does not answer: limits are counted per gateway.</p>
          <p className="mt-1">
            {s.limitsDegraded.map((g) => `${g.gatewayId} since ${utc(g.since)}`).join("; ")}. Each of these gateways holds every limit ÷ the live gateways in
            memory until Redis answers again (balances are unaffected: they are in PostgreSQL). Check Redis (REDIS_URL); the gateways go back to it by
            themselves.
          </p>
        </div>
      )}
      <div className="grid gap-4 sm:grid-cols-4">
        <Stat label="Gateway" value={gw.reachable ? "Online" : "Unreachable"} hint={`${count(gw.streamsOpen)} streams open`} testId="system-gateway" />
        <Stat label="Agents connected" value={count(gw.agentsConnected)} hint={`${count(s.agents.length)} enrolled`} testId="system-agents" />
        <Stat label="Open risk flags" value={count(s.openFlags)} />
        <Stat label="Payouts pending" value={usd(s.pendingPayouts.amountMicros)} hint={`${count(s.pendingPayouts.count)} requests`} />
      </div>
      <div className="mt-6 grid gap-4 lg:grid-cols-2">
        <Card title="Ledger audit">
          <p data-testid="ledger-audit" className={s.audit.ok ? "text-emerald-700" : "text-red-600"}>
            {s.audit.ok ? `All invariants hold (${count(s.audit.walletsChecked)} wallets checked).` : "Invariants FAIL:"}
          </p>
          {!s.audit.ok && (
            <ul className="mt-2 list-disc pl-5 text-sm text-red-700">
              {s.audit.problems.map((p) => (
                <li key={p}>{p}</li>
              ))}
            </ul>
          )}
        </Card>
        <Card title={`Price version on agents (current: ${s.currentPriceVer ?? "none"})`}>
          {s.agents.length === 0 && <p className="text-sm text-slate-500">No agents enrolled yet.</p>}
          <table className={`w-full text-sm ${tableGapClass}`} data-testid="agent-price-versions">
            <tbody>
              {s.agents.map((a) => (
                <tr key={a.id} className="border-t border-slate-100 first:border-0">
                  <td className="py-1.5">
                    {a.name} <span className="font-mono text-xs text-slate-500">{a.id}</span>
                  </td>
                  <td className="py-1.5 text-xs">{a.online ? "online" : "offline"}</td>
                  <td className={`py-1.5 text-right text-xs ${a.priceVer === s.currentPriceVer ? "text-emerald-700" : "text-amber-700"}`}>
                    {a.priceVer ? `v${a.priceVer}` : "—"}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </Card>
      </div>
    </>
  );
}
