import Link from "next/link";
import { requireActor } from "../../../lib/data/actor";
import { listKeys } from "../../../lib/data/keys";
import { usagePage, USAGE_PAGE_ROWS, type UsageFilter } from "../../../lib/data/usage";
import { count, parseUtcDate, usd, utc } from "../../../lib/format";
import { Card, Empty, PageTitle, buttonClass, inputClass, quietButtonClass, Table } from "../../ui";

/** Days of requests the hub keeps in its database (the gateways' ARCHIVE_AFTER_DAYS; older days are archived). */
const HOT_DAYS = Number(process.env.ARCHIVE_AFTER_DAYS ?? 30);

export const metadata = { title: "Usage — Wellspring" };

/** The filter from the query string, and what in it was not a date (ignored, and said so). */
function filterFrom(sp: Record<string, string | string[] | undefined>): { filter: UsageFilter; badDates: string[] } {
  const one = (k: string) => (typeof sp[k] === "string" && sp[k] ? sp[k].slice(0, 256) : undefined);
  const badDates: string[] = [];
  const date = (k: string) => {
    const v = one(k);
    if (v === undefined) return undefined;
    const d = parseUtcDate(v);
    if (d === null) badDates.push(v);
    return d ?? undefined;
  };
  return { filter: { keyId: one("key"), model: one("model"), from: date("from"), to: date("to") }, badDates };
}

/** The "Older →" cursor (`<ISO time>_<request id>`), when it is one. */
function cursorFrom(before: string | string[] | undefined): { startedAt: Date; id: string } | undefined {
  const m = typeof before === "string" ? /^(\d{4}-\d{2}-\d{2}T[\d:.]+Z)_(req_\w+)$/.exec(before) : null;
  const startedAt = m ? new Date(m[1]!) : null;
  return startedAt && !Number.isNaN(startedAt.getTime()) ? { startedAt, id: m![2]! } : undefined;
}

export default async function UsagePage({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  const actor = await requireActor();
  const sp = await searchParams;
  const { filter, badDates } = filterFrom(sp);
  const [rows, keys] = await Promise.all([usagePage(actor, filter, cursorFrom(sp.before)), listKeys(actor)]);
  const query = new URLSearchParams(Object.entries(filter).filter(([, v]) => v) as [string, string][]);
  const last = rows.at(-1);
  const next = rows.length === USAGE_PAGE_ROWS && last ? `?${new URLSearchParams([...query, ["before", `${last.startedAt.toISOString()}_${last.id}`]])}` : null;
  return (
    <>
      <PageTitle
        title="Usage"
        subtitle={`Every request made with your keys in the last ${HOT_DAYS} days: tokens, charge and how it ended. Older requests are archived; your spend totals still count them. Prompts and outputs are never stored.`}
      />
      <Card>
        <form className="mb-4 grid gap-3 sm:grid-cols-5" method="get">
          <label className="text-xs font-medium text-slate-600">
            Key
            <select name="key" defaultValue={filter.keyId ?? ""} className={inputClass}>
              <option value="">All keys</option>
              {keys.map((k) => (
                <option key={k.id} value={k.id}>
                  {k.name}
                </option>
              ))}
            </select>
          </label>
          <label className="text-xs font-medium text-slate-600">
            Model
            <input name="model" defaultValue={filter.model ?? ""} className={inputClass} placeholder="any" />
          </label>
          <label className="text-xs font-medium text-slate-600">
            From (UTC)
            <input type="date" name="from" defaultValue={filter.from ?? ""} className={inputClass} />
          </label>
          <label className="text-xs font-medium text-slate-600">
            To (UTC)
            <input type="date" name="to" defaultValue={filter.to ?? ""} className={inputClass} />
          </label>
          <div className="flex items-end gap-2">
            <button type="submit" className={buttonClass}>
              Filter
            </button>
            <a className={quietButtonClass} href={`/app/usage/export?${query}`} download>
              CSV
            </a>
          </div>
        </form>
        {badDates.length > 0 && (
          <p role="alert" data-testid="usage-bad-date" className="mb-4 rounded-md bg-amber-50 px-3 py-2 text-sm text-amber-800">
            Dates are written YYYY-MM-DD (UTC); {badDates.map((d) => `“${d}”`).join(" and ")} is not a date, so it was ignored.
          </p>
        )}
        {rows.length === 0 ? (
          Object.values(filter).some(Boolean) ? (
            <Empty testId="usage-empty">No requests match these filters.</Empty>
          ) : (
            <Empty testId="usage-empty">
              No requests yet. Create a key on{" "}
              <Link href="/app/keys" className="font-medium text-indigo-600 hover:underline">
                API keys
              </Link>{" "}
              and call the API: every request shows up here within a second.
            </Empty>
          )
        ) : (
          <div className="overflow-x-auto">
            <Table
              testId="usage-table"
              columns={[
                "Time (UTC)",
                "Key",
                "Model",
                "Status",
                { label: "Input", right: true },
                { label: "Output", right: true },
                { label: "Charge", right: true },
                { label: "Duration", right: true },
              ]}
            >
              {rows.map((r) => (
                <tr key={r.id} className="border-t border-slate-100">
                  <td className="py-2 whitespace-nowrap text-xs text-slate-500">{utc(r.startedAt)}</td>
                  <td className="py-2">{r.keyName}</td>
                  <td className="py-2 font-mono text-xs">{r.model ?? "—"}</td>
                  <td className="py-2 text-xs">
                    <span className={r.httpStatus < 400 ? "text-emerald-700" : "text-red-600"}>{r.httpStatus}</span>{" "}
                    <span className="text-slate-500">{r.endCause.replace("_", " ")}</span>
                  </td>
                  <td className="py-2 text-right tabular-nums">{r.inputTokens === null ? "—" : count(r.inputTokens)}</td>
                  <td className="py-2 text-right tabular-nums">
                    {r.outputTokens === null ? "—" : count(r.outputTokens)}
                    {r.estimated && (
                      <span title="Estimated: the provider reported no usage" className="ml-1 text-amber-600">
                        ≈
                      </span>
                    )}
                  </td>
                  <td className="py-2 text-right tabular-nums font-medium" data-testid="usage-charge">
                    {r.chargeMicros === null ? "—" : usd(r.chargeMicros)}
                  </td>
                  <td className="py-2 text-right tabular-nums text-slate-500">{count(r.durationMs)} ms</td>
                </tr>
              ))}
            </Table>
          </div>
        )}
        <div className="mt-4 flex justify-between text-sm">
          <Link href={`/app/usage?${query}`} className="text-indigo-600 hover:underline">
            Newest
          </Link>
          {next && (
            <Link href={`/app/usage${next}`} className="text-indigo-600 hover:underline">
              Older →
            </Link>
          )}
        </div>
      </Card>
    </>
  );
}
