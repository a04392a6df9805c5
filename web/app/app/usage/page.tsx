import Link from "next/link";
import { requireActor } from "../../../lib/data/actor";
import { listKeys } from "../../../lib/data/keys";
import { usagePage, USAGE_PAGE_ROWS, type UsageFilter } from "../../../lib/data/usage";
import { count, usd, utc } from "../../../lib/format";
import { Card, Empty, PageTitle, buttonClass, inputClass, quietButtonClass, Table } from "../../ui";

export const metadata = { title: "Usage — Wellspring" };

const DATE = /^\d{4}-\d{2}-\d{2}$/;

function filterFrom(sp: Record<string, string | string[] | undefined>): UsageFilter {
  const one = (k: string) => (typeof sp[k] === "string" && sp[k] ? (sp[k] as string) : undefined);
  const date = (k: string) => (one(k) && DATE.test(one(k)!) ? one(k) : undefined);
  return { keyId: one("key"), model: one("model"), from: date("from"), to: date("to") };
}

export default async function UsagePage({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  const actor = await requireActor();
  const sp = await searchParams;
  const filter = filterFrom(sp);
  const cursor = typeof sp.before === "string" ? /^(\d{4}-\d{2}-\d{2}T[\d:.]+Z)_(req_\w+)$/.exec(sp.before) : null;
  const [rows, keys] = await Promise.all([
    usagePage(actor, filter, cursor ? { startedAt: new Date(cursor[1]!), id: cursor[2]! } : undefined),
    listKeys(actor),
  ]);
  const query = new URLSearchParams(Object.entries(filter).filter(([, v]) => v) as [string, string][]);
  const last = rows.at(-1);
  const next = rows.length === USAGE_PAGE_ROWS && last ? `?${new URLSearchParams([...query, ["before", `${last.startedAt.toISOString()}_${last.id}`]])}` : null;
  return (
    <>
      <PageTitle title="Usage" subtitle="Every request made with your keys: tokens, charge and how it ended. Prompts and outputs are never stored." />
      <Card>
        <form className="mb-4 grid gap-3 sm:grid-cols-5" method="get">
          <label className="text-xs font-medium text-slate-600">Key
            <select name="key" defaultValue={filter.keyId ?? ""} className={inputClass}>
              <option value="">All keys</option>
              {keys.map((k) => <option key={k.id} value={k.id}>{k.name}</option>)}
            </select>
          </label>
          <label className="text-xs font-medium text-slate-600">Model
            <input name="model" defaultValue={filter.model ?? ""} className={inputClass} placeholder="any" />
          </label>
          <label className="text-xs font-medium text-slate-600">From (UTC)
            <input type="date" name="from" defaultValue={filter.from ?? ""} className={inputClass} />
          </label>
          <label className="text-xs font-medium text-slate-600">To (UTC)
            <input type="date" name="to" defaultValue={filter.to ?? ""} className={inputClass} />
          </label>
          <div className="flex items-end gap-2">
            <button type="submit" className={buttonClass}>Filter</button>
            <a className={quietButtonClass} href={`/app/usage/export?${query}`} download>CSV</a>
          </div>
        </form>
        {rows.length === 0 ? (
          <Empty>No requests match.</Empty>
        ) : (
          <div className="overflow-x-auto">
            <Table testId="usage-table" columns={["Time (UTC)", "Key", "Model", "Status", { label: "Input", right: true }, { label: "Output", right: true }, { label: "Charge", right: true }, { label: "Duration", right: true }]}>
                {rows.map((r) => (
                  <tr key={r.id} className="border-t border-slate-100">
                    <td className="py-2 whitespace-nowrap text-xs text-slate-500">{utc(r.startedAt)}</td>
                    <td className="py-2">{r.keyName}</td>
                    <td className="py-2 font-mono text-xs">{r.model ?? "—"}</td>
                    <td className="py-2 text-xs"><span className={r.httpStatus < 400 ? "text-emerald-700" : "text-red-600"}>{r.httpStatus}</span> <span className="text-slate-500">{r.endCause.replace("_", " ")}</span></td>
                    <td className="py-2 text-right tabular-nums">{r.inputTokens === null ? "—" : count(r.inputTokens)}</td>
                    <td className="py-2 text-right tabular-nums">{r.outputTokens === null ? "—" : count(r.outputTokens)}{r.estimated && <span title="Estimated: the provider reported no usage" className="ml-1 text-amber-600">≈</span>}</td>
                    <td className="py-2 text-right tabular-nums font-medium" data-testid="usage-charge">{r.chargeMicros === null ? "—" : usd(r.chargeMicros)}</td>
                    <td className="py-2 text-right tabular-nums text-slate-500">{count(r.durationMs)} ms</td>
                  </tr>
                ))}
              </Table>
          </div>
        )}
        <div className="mt-4 flex justify-between text-sm">
          <Link href={`/app/usage?${query}`} className="text-indigo-600 hover:underline">Newest</Link>
          {next && <Link href={`/app/usage${next}`} className="text-indigo-600 hover:underline">Older →</Link>}
        </div>
      </Card>
    </>
  );
}
