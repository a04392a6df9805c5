import { requireActor } from "../../../lib/data/actor";
import { balance } from "../../../lib/data/usage";
import { usd } from "../../../lib/format";
import { Card, PageTitle, Stat } from "../../ui";
import { RedeemForm } from "./redeem-form";

export const metadata = { title: "Billing — Wellspring" };

export default async function BillingPage() {
  const actor = await requireActor();
  const b = await balance(actor);
  return (
    <>
      <PageTitle title="Billing" subtitle="Every request reserves its most possible cost and is charged exactly once when it ends." />
      <div className="grid gap-4 sm:grid-cols-3">
        <Stat label="Available" value={usd(b.availableMicros)} testId="billing-available" />
        <Stat label="Held by requests in flight" value={usd(b.reservedMicros)} />
        <Stat label="Spent, all time" value={usd(b.spentMicros)} />
      </div>
      <div className="mt-6 max-w-md">
        <Card title="Top up with a redemption code">
          <RedeemForm />
        </Card>
      </div>
    </>
  );
}
