import { redirect } from "next/navigation";
import { CANARY_SUMMARY_WINDOW_MS } from "@wellspring/gateway";
import { requireActor } from "../../../../lib/data/actor";
import { searchAccounts, type AdminAgentRow } from "../../../../lib/data/admin";
import { usd, utc } from "../../../../lib/format";
import { ConfirmAction } from "../../../client-ui";
import { ActionButton, buttonClass, Card, Empty, inputClass, PageTitle, quietButtonClass, Table } from "../../../ui";
import { agentAction, sendResetLinkAction, unlockSigninAction, userStatusAction } from "./actions";

export const metadata = { title: "Users and agents — Wellspring admin" };

const RECOMMENDATION: Record<string, string> = {
  S: "recommends tier S",
  A: "recommends tier A",
  discount: "recommends the discount share",
  review: "substitution found: review its flag",
};

/** An agent's canaries: the last result, median time to first byte, error rate, and the tier they recommend. */
function CanaryCell({ summary }: { summary: AdminAgentRow["canaries"] }) {
  if (!summary) return <span className="text-slate-500">none yet</span>;
  const last = summary.last;
  return (
    <div className="space-y-0.5">
      {last && (
        <div className={last.ok ? "text-emerald-700" : "text-red-700"}>
          last {last.ok ? "ok" : `failed (${last.error ?? last.problems.join(", ")})`} · {last.model} · {utc(last.at)}
        </div>
      )}
      <div>
        {summary.total} run{summary.total === 1 ? "" : "s"} · TTFB p50 {summary.ttfbP50Ms === null ? "—" : `${summary.ttfbP50Ms} ms`} · errors{" "}
        {(summary.errorRateBps / 100).toFixed(1)}%{summary.substitutions > 0 ? ` · ${summary.substitutions} substituted` : ""}
      </div>
      <div className={summary.recommendation === "review" ? "font-medium text-red-700" : "text-slate-600"}>
        {summary.recommendation ? RECOMMENDATION[summary.recommendation] : "too few runs to recommend a tier"}
      </div>
    </div>
  );
}

const NOTICES: Record<string, string> = {
  "reset-sent": "A password reset link was sent to the user (it is in the Outbox while no SMTP server is configured).",
  "reset-failed": "The reset link could not be sent: the account is not active, or the mail server refused it (see the portal's log).",
};

export default async function AccountsPage({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const params = await searchParams;
  const q = typeof params.q === "string" ? params.q : "";
  const notice = typeof params.notice === "string" ? NOTICES[params.notice] : undefined;
  const { users, agents } = await searchAccounts(actor, q);
  return (
    <>
      <PageTitle title="Users and agents" subtitle="Search by email, name or id. Suspending takes effect on the next request (keys within 5 s)." />
      {notice && (
        <p role="status" data-testid="accounts-notice" className="mb-4 rounded-md bg-indigo-50 px-3 py-2 text-sm text-indigo-800">
          {notice}
        </p>
      )}
      <form method="get" className="mb-6 flex max-w-lg gap-2">
        <input name="q" defaultValue={q} aria-label="Search" placeholder="email, name or id" className={inputClass} />
        <button type="submit" className={buttonClass}>
          Search
        </button>
      </form>
      <Card title={`Users (${users.length})`}>
        {users.length === 0 ? (
          <Empty>No user matches.</Empty>
        ) : (
          <Table testId="admin-users" columns={["User", "Roles", { label: "Balance", right: true }, { label: "Spent", right: true }, "Status", ""]}>
            {users.map((u) => (
              <tr key={u.id} className="border-t border-slate-100" data-testid={`user-${u.email}`}>
                <td className="py-2">
                  <div className="break-all">{u.email}</div>
                  <div className="font-mono text-xs text-slate-500">
                    {u.id} · since {utc(u.createdAt)}
                  </div>
                </td>
                <td className="py-2 text-xs">{["user", u.isOwner && "owner", u.isAdmin && "admin"].filter(Boolean).join(", ")}</td>
                <td className="py-2 text-right tabular-nums">{usd(u.availableMicros)}</td>
                <td className="py-2 text-right tabular-nums">{usd(u.spentMicros)}</td>
                <td className="py-2 text-xs">
                  <div>{u.status}</div>
                  {u.signinThrottle && (
                    <div className="mt-1 flex items-center gap-2 text-amber-700" data-testid="signin-throttle">
                      <span>
                        {u.signinThrottle.failures} failed sign-in{u.signinThrottle.failures === 1 ? "" : "s"} from {u.signinThrottle.addresses} address
                        {u.signinThrottle.addresses === 1 ? "" : "es"}
                        {u.signinThrottle.accountWaitUntil ? ` · next try after ${utc(u.signinThrottle.accountWaitUntil)}` : ""}
                      </span>
                      <ActionButton action={unlockSigninAction} fields={{ userId: u.id }} label="Unlock" ariaLabel={`Unlock sign-in of ${u.email}`} />
                    </div>
                  )}
                </td>
                <td className="py-2 text-right">
                  <div className="flex justify-end gap-2">
                    {u.status === "active" && (
                      <ActionButton
                        action={sendResetLinkAction}
                        fields={{ userId: u.id }}
                        label="Send reset link"
                        ariaLabel={`Send a password reset link to ${u.email}`}
                      />
                    )}
                    {u.id !== actor.userId &&
                      (u.status === "active" ? (
                        <ConfirmAction
                          action={userStatusAction}
                          fields={{ userId: u.id, status: "suspended" }}
                          label="Suspend"
                          ariaLabel={`Suspend ${u.email}`}
                          question={`Suspend ${u.email}? Their keys and sessions stop at once.`}
                          confirmLabel="Yes, suspend"
                        />
                      ) : (
                        <ActionButton action={userStatusAction} fields={{ userId: u.id, status: "active" }} label="Reactivate" />
                      ))}
                  </div>
                </td>
              </tr>
            ))}
          </Table>
        )}
      </Card>
      <div className="mt-6">
        <Card title={`Agents (${agents.length})`}>
          {agents.length === 0 ? (
            <Empty>No agent matches.</Empty>
          ) : (
            <Table testId="admin-agents" columns={["Agent", "Owner", "Tier", "Status", `Canaries (${CANARY_SUMMARY_WINDOW_MS / 86_400_000} days)`, ""]}>
              {agents.map((a) => (
                <tr key={a.id} className="border-t border-slate-100" data-testid={`agent-${a.id}`}>
                  <td className="py-2">
                    <div>{a.name}</div>
                    <div className="font-mono text-xs text-slate-500">
                      {a.id}
                      {a.priceVer ? ` · prices v${a.priceVer}` : ""}
                    </div>
                  </td>
                  <td className="py-2 text-xs">{a.ownerEmail}</td>
                  <td className="py-2">
                    <form action={agentAction} className="flex items-center gap-1">
                      <input type="hidden" name="agentId" value={a.id} />
                      <select
                        name="tier"
                        defaultValue={a.tier}
                        aria-label={`Tier of ${a.name}`}
                        className="rounded border border-slate-300 px-1 py-0.5 text-xs"
                      >
                        <option value="S">S (0.9)</option>
                        <option value="A">A (0.7)</option>
                        <option value="discount">discount</option>
                      </select>
                      <button type="submit" className={quietButtonClass}>
                        Set
                      </button>
                    </form>
                    {a.discountLane && <div className="text-xs text-slate-500">in the discount lane</div>}
                  </td>
                  <td className="py-2 text-xs">
                    {a.status}
                    {a.breakers.length > 0 && (
                      <div data-testid={`agent-breakers-${a.id}`} className="mt-1 text-red-700">
                        {a.breakers.map((b) => (
                          <div key={`${b.gatewayId}:${b.model}`}>
                            {b.model}: {b.state === "open" ? "circuit open" : "half-open"} on {b.gatewayId} since {utc(b.since)}
                          </div>
                        ))}
                      </div>
                    )}
                  </td>
                  <td className="py-2 text-xs" data-testid={`agent-canaries-${a.id}`}>
                    <CanaryCell summary={a.canaries} />
                  </td>
                  <td className="py-2 text-right">
                    {a.status !== "revoked" &&
                      (a.status === "suspended" ? (
                        <ActionButton action={agentAction} fields={{ agentId: a.id, status: "active" }} label="Reactivate" />
                      ) : (
                        <ConfirmAction
                          action={agentAction}
                          fields={{ agentId: a.id, status: "suspended" }}
                          label="Suspend"
                          ariaLabel={`Suspend agent ${a.name}`}
                          question={`Suspend ${a.name}? Its tunnel closes at once.`}
                          confirmLabel="Yes, suspend"
                        />
                      ))}
                  </td>
                </tr>
              ))}
            </Table>
          )}
        </Card>
      </div>
    </>
  );
}
