import { redirect } from "next/navigation";
import { requireActor } from "../../../../lib/data/actor";
import { outbox, OUTBOX_ROWS } from "../../../../lib/data/admin";
import { utc } from "../../../../lib/format";
import { OUTBOX_RETENTION_MS } from "../../../../lib/mail";
import { Card, Empty, PageTitle } from "../../../ui";

export const metadata = { title: "Outbox — Wellspring admin" };

export default async function OutboxPage() {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const { mode, mails } = await outbox(actor);
  return (
    <>
      <PageTitle
        title="Outbox"
        subtitle={
          mode === "smtp"
            ? "Mail goes out through the SMTP server (SMTP_URL). Mail kept before it was configured is listed below."
            : `No SMTP server is configured (SMTP_URL), so the portal's mail is kept here instead: pass password reset links on to their owners yourself. Newest ${OUTBOX_ROWS}, kept ${OUTBOX_RETENTION_MS / 86_400_000} days.`
        }
      />
      <Card title={`Mail (${mails.length})`}>
        {mails.length === 0 ? (
          <Empty>No mail.</Empty>
        ) : (
          <ul className="divide-y divide-slate-100" data-testid="outbox">
            {mails.map((m) => (
              <li key={m.id} className="py-3" data-testid={`mail-${m.kind}`}>
                <div className="flex flex-wrap items-baseline justify-between gap-2">
                  <div className="text-sm font-medium text-slate-800">{m.subject}</div>
                  <div className="text-xs text-slate-500">{utc(m.createdAt)}</div>
                </div>
                <div className="text-xs text-slate-600">
                  To: <span data-testid="mail-to">{m.toAddress}</span>
                </div>
                <pre className="mt-2 whitespace-pre-wrap break-all rounded bg-slate-50 p-2 font-mono text-xs text-slate-700">{m.text}</pre>
              </li>
            ))}
          </ul>
        )}
      </Card>
    </>
  );
}
