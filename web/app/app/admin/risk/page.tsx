import Link from "next/link";
import { redirect } from "next/navigation";
import { requireActor } from "../../../../lib/data/actor";
import { laneRequests } from "../../../../lib/data/admin";
import { flagQueue } from "../../../../lib/data/risk";
import { utc } from "../../../../lib/format";
import { Card, Empty, PageTitle, Table } from "../../../ui";
import { DecideForm } from "./decide-form";
import { LaneForm } from "./lane-form";

export const metadata = { title: "Risk review — Wellspring admin" };

const SEVERITY = ["", "low", "medium", "high"];

export default async function RiskPage() {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const [open, decided, lanes] = await Promise.all([flagQueue(actor, "open"), flagQueue(actor, "decided"), laneRequests(actor)]);
  return (
    <>
      <PageTitle
        title="Risk review"
        subtitle="Flags raised by the hub's detectors, with what they saw; a detector that fires again updates its open flag. A flag's page holds or releases the owner's earnings and suspends or reinstates its subject. Every decision and action needs a note and is kept in the audit trail."
      />
      <Card title={`Open (${open.length})`}>
        {open.length === 0 ? (
          <Empty>Nothing to review.</Empty>
        ) : (
          <ul className="divide-y divide-slate-100" data-testid="open-flags">
            {open.map((f) => (
              <li key={f.id} className="grid gap-3 py-4 lg:grid-cols-2" data-testid={`flag-${f.id}`}>
                <div>
                  <div className="flex items-center gap-2">
                    <span
                      className={`rounded px-1.5 py-0.5 text-xs font-medium ${f.severity === 3 ? "bg-red-50 text-red-700" : f.severity === 2 ? "bg-amber-50 text-amber-700" : "bg-slate-100 text-slate-600"}`}
                    >
                      {SEVERITY[f.severity]}
                    </span>
                    <span className="font-medium">{f.kind.replaceAll("_", " ")}</span>
                    <Link href={`/app/admin/risk/${f.id}`} className="text-xs text-sky-700 hover:underline">
                      Review and act
                    </Link>
                  </div>
                  <div className="mt-1 font-mono text-xs text-slate-600">{f.subject}</div>
                  <div className="text-xs text-slate-500" data-testid={`flag-raised-${f.id}`}>
                    raised {utc(f.createdAt)}
                    {f.raisedCount > 1 ? ` · ${f.raisedCount} times, last ${utc(f.lastRaisedAt)}` : ""}
                  </div>
                  <pre className="mt-2 overflow-x-auto rounded bg-slate-50 p-2 text-xs text-slate-700">{JSON.stringify(f.evidence, null, 2)}</pre>
                </div>
                <DecideForm flagId={f.id} />
              </li>
            ))}
          </ul>
        )}
      </Card>
      <div className="mt-6">
        <Card title={`Discount lane requests (${lanes.length})`}>
          {lanes.length === 0 ? (
            <Empty testId="lane-requests-empty">No owner is waiting.</Empty>
          ) : (
            <ul className="divide-y divide-slate-100" data-testid="lane-requests">
              {lanes.map((l) => (
                <li key={l.agentId} className="grid gap-3 py-4 lg:grid-cols-2" data-testid={`lane-${l.agentId}`}>
                  <div className="text-sm">
                    <div className="font-medium">{l.agentName}</div>
                    <div className="font-mono text-xs text-slate-600">agent:{l.agentId}</div>
                    <div className="text-xs text-slate-500">
                      {l.ownerEmail} · tier {l.tier} · {l.status} · requested {utc(l.requestedAt)}
                    </div>
                    <p className="mt-1 text-xs text-slate-500">Approving gives the agent routing priority and the discount share of the official price.</p>
                  </div>
                  <LaneForm agentId={l.agentId} />
                </li>
              ))}
            </ul>
          )}
        </Card>
      </div>
      <div className="mt-6">
        <Card title="Decided">
          {decided.length === 0 ? (
            <Empty>No decisions yet.</Empty>
          ) : (
            <Table testId="decided-flags" columns={["Flag", "Subject", "Decision", "Note", "When (UTC)"]}>
              {decided.map((f) => (
                <tr key={f.id} className="border-t border-slate-100">
                  <td className="py-2">
                    <Link href={`/app/admin/risk/${f.id}`} className="text-sky-700 hover:underline">
                      {f.kind.replaceAll("_", " ")}
                    </Link>
                  </td>
                  <td className="py-2 font-mono text-xs">{f.subject}</td>
                  <td className="py-2">{f.status}</td>
                  <td className="py-2 text-xs text-slate-600">{f.note}</td>
                  <td className="py-2 text-xs text-slate-500">{f.decidedAt ? utc(f.decidedAt) : ""}</td>
                </tr>
              ))}
            </Table>
          )}
        </Card>
      </div>
    </>
  );
}
