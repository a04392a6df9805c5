import { pendingDeferred, PENDING_DEFERRED_ROWS, type PendingDeferred } from "../../../lib/data/billing";
import { requireActor } from "../../../lib/data/actor";
import { balance } from "../../../lib/data/usage";
import { count, usd, utc } from "../../../lib/format";
import { Card, Empty, PageTitle, Stat, Table } from "../../ui";
import { RedeemForm } from "./redeem-form";

export const metadata = { title: "Billing — Wellspring" };

const KIND_LABEL: Record<PendingDeferred["kind"], string> = {
  response: "Background response",
  openai_batch: "Batch (OpenAI)",
  anthropic_batch: "Message batch (Anthropic)",
};

export default async function BillingPage() {
  const actor = await requireActor();
  const [b, pending] = await Promise.all([balance(actor), pendingDeferred(actor)]);
  return (
    <>
      <PageTitle
        title="Billing"
        subtitle="Every request holds its most possible cost before it starts and is charged exactly once when it ends; what a request does not use is free again at once."
      />
      <div className="grid gap-4 sm:grid-cols-3">
        <Stat label="Balance" value={usd(b.availableMicros + b.reservedMicros)} testId="billing-balance" />
        <Stat
          label="Held for requests in flight"
          value={usd(b.reservedMicros)}
          hint="Set aside by the gateways for your running requests — given back seconds after your last one — and for background work still running (below) until it ends."
        />
        <Stat label="Spent, all time" value={usd(b.spentMicros)} />
      </div>
      <div className="mt-6">
        <Card title="Background work still running">
          {pending.count === 0 ? (
            <Empty testId="billing-pending-empty">
              No background responses or batches are running. When one is, its most possible cost is held here until it ends; then you are charged what it used,
              at batch prices for a batch, and the rest is free again.
            </Empty>
          ) : (
            <>
              <p className="mb-3 text-sm text-slate-600" data-testid="billing-pending-summary">
                {count(pending.count)} running, holding {usd(pending.heldMicros)} in all. Each is charged once when it ends, for what it used.
                {pending.count > PENDING_DEFERRED_ROWS ? ` The newest ${PENDING_DEFERRED_ROWS} are listed.` : ""}
              </p>
              <Table columns={["What", "Id", "Model", "Status", "Started", { label: "Held", right: true }]} testId="billing-pending">
                {pending.rows.map((r) => (
                  <tr key={`${r.kind}:${r.objectId}`}>
                    <td className="whitespace-nowrap">{KIND_LABEL[r.kind]}</td>
                    <td className="font-mono text-xs">{r.objectId}</td>
                    <td>{r.model}</td>
                    <td>{r.lastStatus ?? "starting"}</td>
                    <td className="whitespace-nowrap">{utc(r.createdAt)}</td>
                    <td className="text-right tabular-nums">{usd(r.heldMicros)}</td>
                  </tr>
                ))}
              </Table>
            </>
          )}
        </Card>
      </div>
      <div className="mt-6 max-w-md">
        <Card title="Top up with a redemption code">
          <RedeemForm />
        </Card>
      </div>
    </>
  );
}
