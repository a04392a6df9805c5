import { redirect } from "next/navigation";
import { requireActor } from "../../../../lib/data/actor";
import { currentPrices, draftText } from "../../../../lib/data/prices";
import { utc } from "../../../../lib/format";
import { Card, PageTitle } from "../../../ui";
import { DraftEditor } from "./draft-editor";

export const metadata = { title: "Price tables — Wellspring admin" };

export default async function AdminPricesPage() {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const current = await currentPrices();
  return (
    <>
      <PageTitle
        title="Official price table"
        subtitle={
          current
            ? `Version ${current.ver}, published ${utc(current.publishedAt)}. Edit a draft, check the difference, publish: agents receive it within a second.`
            : "Nothing published yet."
        }
      />
      <Card title="Draft">
        <p className="mb-3 text-xs text-slate-500">
          One model per line: <code>provider model input output cached</code> in USD per 1M tokens, optionally followed by{" "}
          <code>audio_per_second image character_per_1M</code>. Lines starting with # are ignored.
        </p>
        <DraftEditor initial={current ? draftText(current.prices) : ""} />
      </Card>
    </>
  );
}
