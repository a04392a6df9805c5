import Link from "next/link";
import { notFound, redirect } from "next/navigation";
import { requireActor } from "../../../../../lib/data/actor";
import { reviewFlag } from "../../../../../lib/data/risk";
import { usd, utc } from "../../../../../lib/format";
import { Card, Empty, PageTitle, Table } from "../../../../ui";
import { ActForm } from "../act-form";
import { DecideForm } from "../decide-form";

export const metadata = { title: "Risk flag — Wellspring admin" };

const ACTION_TEXT: Record<string, string> = {
  "risk.approved": "Approved",
  "risk.dismissed": "Dismissed",
  "risk.suspended": "Decided: suspend",
  "risk.hold_earnings": "Held earnings",
  "risk.release_earnings": "Released earnings",
  "risk.suspend_subject": "Suspended",
  "risk.unsuspend_subject": "Reinstated",
};

/** What an action changed, in words (amounts from the audit event's decimal strings). */
function changed(detail: Record<string, unknown>): string {
  const micros = (v: unknown) => (typeof v === "string" || typeof v === "number" ? usd(BigInt(v)) : "");
  if (detail.heldMicros !== undefined) return `${micros(detail.heldMicros)} held`;
  if (detail.releasedMicros !== undefined) return `${micros(detail.releasedMicros)} released`;
  if (typeof detail.status === "string") return `now ${detail.status}`;
  if (typeof detail.releasedHolds === "number" && detail.releasedHolds > 0) return `${detail.releasedHolds} holds released`;
  return "";
}

export default async function FlagPage({ params }: { params: Promise<{ flagId: string }> }) {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const { flagId } = await params;
  const review = await reviewFlag(actor, flagId);
  if (!review) notFound();
  const { flag, subjectStatus, ownerId, held, actions } = review;
  const subjectType = flag.subject.split(":")[0]!;
  return (
    <>
      <PageTitle
        title={`Risk flag: ${flag.kind.replaceAll("_", " ")}`}
        subtitle="What the detector saw, the subject's state, and everything done about it (the audit trail)."
      />
      <p className="mb-4 text-sm">
        <Link href="/app/admin/risk" className="text-sky-700 hover:underline">
          ← Risk review
        </Link>
      </p>
      <div className="grid gap-6 lg:grid-cols-2">
        <Card title="Evidence">
          <dl className="space-y-1 text-sm" data-testid="flag-facts">
            <div>
              <dt className="inline text-slate-500">Subject: </dt>
              <dd className="inline font-mono text-xs">{flag.subject}</dd>{" "}
              <dd className="inline" data-testid="flag-subject-status">
                ({subjectStatus ?? "gone"})
              </dd>
            </div>
            <div>
              <dt className="inline text-slate-500">Status: </dt>
              <dd className="inline" data-testid="flag-status">
                {flag.status}
              </dd>
            </div>
            <div>
              <dt className="inline text-slate-500">Raised: </dt>
              <dd className="inline">
                {utc(flag.createdAt)}
                {flag.raisedCount > 1 ? ` · ${flag.raisedCount} times, last ${utc(flag.lastRaisedAt)}` : ""}
              </dd>
            </div>
            <div>
              <dt className="inline text-slate-500">Earnings held by this flag: </dt>
              <dd className="inline" data-testid="flag-held">
                {usd(held.amountMicros)} ({held.holds} {held.holds === 1 ? "hold" : "holds"})
              </dd>
            </div>
          </dl>
          <pre className="mt-3 overflow-x-auto rounded bg-slate-50 p-2 text-xs text-slate-700" data-testid="flag-evidence">
            {JSON.stringify(flag.evidence, null, 2)}
          </pre>
        </Card>
        <Card title="Act">
          <ActForm
            flagId={flag.id}
            choices={{
              hold: ownerId !== null,
              release: held.holds > 0,
              suspend: subjectStatus === "active" || subjectStatus === "paused",
              unsuspend: subjectStatus === "suspended",
              subjectType,
            }}
          />
          {flag.status === "open" && (
            <div className="mt-6 border-t border-slate-100 pt-4">
              <h3 className="mb-2 text-sm font-medium">Decide the flag</h3>
              <DecideForm flagId={flag.id} />
            </div>
          )}
        </Card>
      </div>
      <div className="mt-6">
        <Card title="What was done">
          {actions.length === 0 ? (
            <Empty testId="flag-history-empty">Nothing yet.</Empty>
          ) : (
            <Table testId="flag-history" columns={["When (UTC)", "Action", "By", "Changed", "Note"]}>
              {actions.map((a, i) => (
                <tr key={i} className="border-t border-slate-100">
                  <td className="py-2 text-xs text-slate-500">{utc(a.at)}</td>
                  <td className="py-2">{ACTION_TEXT[a.action] ?? a.action}</td>
                  <td className="py-2 font-mono text-xs">{a.actor}</td>
                  <td className="py-2 text-xs">{changed(a.detail)}</td>
                  <td className="py-2 text-xs text-slate-600">{a.note}</td>
                </tr>
              ))}
            </Table>
          )}
        </Card>
      </div>
    </>
  );
}
