import { redirect } from "next/navigation";
import { requireActor } from "../../../../lib/data/actor";
import { db } from "../../../../lib/db";
import { usd, utc } from "../../../../lib/format";
import { Card, Empty, PageTitle, Table } from "../../../ui";
import { DecidePayout } from "./decide-payout";

export const metadata = { title: "Payouts — Wellspring admin" };

export default async function PayoutsPage() {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const payouts = await db().payout.findMany({
    orderBy: [{ status: "asc" }, { requestedAt: "desc" }],
    take: 200,
    include: { owner: { select: { email: true, payoutDestination: true } } },
  });
  return (
    <>
      <PageTitle title="Payouts" subtitle="Owners' requests. Pay them outside Wellspring, then mark them paid with the payment reference." />
      <Card>
        {payouts.length === 0 ? (
          <Empty>No payout requests.</Empty>
        ) : (
          <Table testId="admin-payouts" columns={["Requested (UTC)", "Owner", "Pay to", { label: "Amount", right: true }, "Status", ""]}>
            {payouts.map((p) => (
              <tr key={p.id} className="border-t border-slate-100 align-top">
                <td className="py-2 text-xs text-slate-500">{utc(p.requestedAt)}</td>
                <td className="py-2">{p.owner.email}</td>
                <td className="py-2 text-xs">{p.owner.payoutDestination ?? <span className="text-slate-400">not set (ask the owner)</span>}</td>
                <td className="py-2 text-right tabular-nums">{usd(p.amountMicros)}</td>
                <td className="py-2 text-xs">{p.status === "requested" ? "pending" : `${p.status}${p.reference ? ` · ${p.reference}` : ""}`}</td>
                <td className="py-2">{p.status === "requested" && <DecidePayout payoutId={p.id} />}</td>
              </tr>
            ))}
          </Table>
        )}
      </Card>
    </>
  );
}
