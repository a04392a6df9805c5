import { requireActor } from "../../../lib/data/actor";
import { myPrices, priceHistory } from "../../../lib/data/prices";
import { rate, utc } from "../../../lib/format";
import { Card, Empty, PageTitle, Table } from "../../ui";

export const metadata = { title: "Prices — Wellspring" };

/** "$0.15" from micro-USD per million tokens (i.e. dollars per 1M tokens). */
const perM = (m: bigint | undefined) => `$${rate(m ?? 0n)}`;

export default async function PricesPage() {
  const actor = await requireActor();
  const [mine, history] = await Promise.all([myPrices(actor), priceHistory()]);
  return (
    <>
      <PageTitle title="Prices" subtitle="What you pay per model on your plan. Every request is priced with the version current when it starts." />
      {!mine ? (
        <Empty>No price table has been published yet.</Empty>
      ) : (
        <div className="grid gap-6 lg:grid-cols-3">
          <div className="lg:col-span-2">
            <Card title={`Your prices — official version ${mine.ver}, plan ${mine.plan}`}>
              <Table
                testId="my-prices"
                columns={[
                  "Model",
                  { label: "Input / 1M", right: true },
                  { label: "Output / 1M", right: true },
                  { label: "Cached input / 1M", right: true },
                  { label: "Other", right: true },
                ]}
              >
                {mine.rows.map((r) => (
                  <tr key={`${r.provider}:${r.model}`} className="border-t border-slate-100" data-testid={`price-${r.model}`}>
                    <td className="py-1.5">
                      <span className="font-mono text-xs">{r.model}</span> <span className="text-xs text-slate-400">{r.provider}</span>
                    </td>
                    <td className="py-1.5 text-right tabular-nums">{perM(r.mine.inputMicrosPerMTok)}</td>
                    <td className="py-1.5 text-right tabular-nums">{perM(r.mine.outputMicrosPerMTok)}</td>
                    <td className="py-1.5 text-right tabular-nums">{perM(r.mine.cachedInputMicrosPerMTok)}</td>
                    <td className="py-1.5 text-right text-xs text-slate-500">
                      {r.mine.audioSecondMicros ? `${perM(r.mine.audioSecondMicros)} / s audio ` : ""}
                      {r.mine.imageMicros ? `${perM(r.mine.imageMicros)} / image ` : ""}
                      {r.mine.characterMicrosPerM ? `${perM(r.mine.characterMicrosPerM)} / 1M chars` : ""}
                    </td>
                  </tr>
                ))}
              </Table>
            </Card>
          </div>
          <Card title="Official versions">
            <ul className="space-y-2 text-sm" data-testid="price-history">
              {history.map((v) => (
                <li key={v.ver} className="border-b border-slate-100 pb-2 last:border-0">
                  <div className="font-medium">Version {v.ver}</div>
                  <div className="text-xs text-slate-500">
                    {utc(v.publishedAt)} · {v.models} models
                  </div>
                  {v.note && <div className="text-xs text-slate-600">{v.note}</div>}
                </li>
              ))}
            </ul>
          </Card>
        </div>
      )}
    </>
  );
}
