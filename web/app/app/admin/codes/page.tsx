import { redirect } from "next/navigation";
import { requireActor } from "../../../../lib/data/actor";
import { redemptionBatches } from "../../../../lib/data/admin";
import { count, usd, utc, utcDate } from "../../../../lib/format";
import { Card, Empty, PageTitle, Table } from "../../../ui";
import { BatchForm } from "./batch-form";

export const metadata = { title: "Redemption codes — Wellspring admin" };

export default async function CodesPage() {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const batches = await redemptionBatches(actor);
  return (
    <>
      <PageTitle
        title="Redemption codes"
        subtitle="Single-use codes that add credit to the account that redeems them. Codes are shown once; only their hashes are kept."
      />
      <div className="grid gap-6 lg:grid-cols-3">
        <Card title="New batch">
          <BatchForm />
        </Card>
        <div className="lg:col-span-2">
          <Card title="Batches">
            {batches.length === 0 ? (
              <Empty>No batches yet.</Empty>
            ) : (
              <Table testId="batches" columns={["Created (UTC)", { label: "Value", right: true }, { label: "Redeemed", right: true }, "Expires", "Note"]}>
                {batches.map((b) => (
                  <tr key={b.id} className="border-t border-slate-100">
                    <td className="py-2 text-xs text-slate-500">{utc(b.createdAt)}</td>
                    <td className="py-2 text-right tabular-nums">{usd(b.amountMicros)}</td>
                    <td className="py-2 text-right tabular-nums">
                      {count(b.redeemed)} / {count(b.codeCount)}
                    </td>
                    <td className="py-2 text-xs">{b.expiresAt ? utcDate(b.expiresAt) : "never"}</td>
                    <td className="py-2 text-xs text-slate-600">{b.note ?? ""}</td>
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
