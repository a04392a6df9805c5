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
      <PageTitle
        title="Billing"
        subtitle="Every request holds its most possible cost before it starts and is charged exactly once when it ends; what a request does not use is free again at once."
      />
      <div className="grid gap-4 sm:grid-cols-3">
        <Stat label="Balance" value={usd(b.availableMicros + b.reservedMicros)} testId="billing-balance" />
        <Stat
          label="Held for requests in flight"
          value={usd(b.reservedMicros)}
          hint="Set aside by the gateways for your running requests; given back seconds after your last one."
        />
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
