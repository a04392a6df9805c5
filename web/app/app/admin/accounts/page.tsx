import { redirect } from "next/navigation";
import { requireActor } from "../../../../lib/data/actor";
import { searchAccounts } from "../../../../lib/data/admin";
import { usd, utc } from "../../../../lib/format";
import { ActionButton, buttonClass, Card, Empty, inputClass, PageTitle, quietButtonClass, Table } from "../../../ui";
import { agentAction, userStatusAction } from "./actions";

export const metadata = { title: "Users and agents — Wellspring admin" };

export default async function AccountsPage({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const q = typeof (await searchParams).q === "string" ? ((await searchParams).q as string) : "";
  const { users, agents } = await searchAccounts(actor, q);
  return (
    <>
      <PageTitle title="Users and agents" subtitle="Search by email, name or id. Suspending takes effect on the next request (keys within 5 s)." />
      <form method="get" className="mb-6 flex max-w-lg gap-2">
        <input name="q" defaultValue={q} aria-label="Search" placeholder="email, name or id" className={inputClass} />
        <button type="submit" className={buttonClass}>Search</button>
      </form>
      <Card title={`Users (${users.length})`}>
        {users.length === 0 ? <Empty>No user matches.</Empty> : (
          <Table testId="admin-users" columns={["User", "Roles", { label: "Balance", right: true }, { label: "Spent", right: true }, "Status", ""]}>
              {users.map((u) => (
                <tr key={u.id} className="border-t border-slate-100" data-testid={`user-${u.email}`}>
                  <td className="py-2"><div>{u.email}</div><div className="font-mono text-xs text-slate-500">{u.id} · since {utc(u.createdAt)}</div></td>
                  <td className="py-2 text-xs">{["user", u.isOwner && "owner", u.isAdmin && "admin"].filter(Boolean).join(", ")}</td>
                  <td className="py-2 text-right tabular-nums">{usd(u.availableMicros)}</td>
                  <td className="py-2 text-right tabular-nums">{usd(u.spentMicros)}</td>
                  <td className="py-2 text-xs">{u.status}</td>
                  <td className="py-2 text-right">
                    {u.id !== actor.userId && (
                      <ActionButton action={userStatusAction} fields={{ userId: u.id, status: u.status === "active" ? "suspended" : "active" }} label={u.status === "active" ? "Suspend" : "Reactivate"} danger={u.status === "active"} />
                    )}
                  </td>
                </tr>
              ))}
          </Table>
        )}
      </Card>
      <div className="mt-6">
        <Card title={`Agents (${agents.length})`}>
          {agents.length === 0 ? <Empty>No agent matches.</Empty> : (
            <Table testId="admin-agents" columns={["Agent", "Owner", "Tier", "Status", ""]}>
                {agents.map((a) => (
                  <tr key={a.id} className="border-t border-slate-100" data-testid={`agent-${a.id}`}>
                    <td className="py-2"><div>{a.name}</div><div className="font-mono text-xs text-slate-500">{a.id}{a.priceVer ? ` · prices v${a.priceVer}` : ""}</div></td>
                    <td className="py-2 text-xs">{a.ownerEmail}</td>
                    <td className="py-2">
                      <form action={agentAction} className="flex items-center gap-1">
                        <input type="hidden" name="agentId" value={a.id} />
                        <select name="tier" defaultValue={a.tier} aria-label={`Tier of ${a.name}`} className="rounded border border-slate-300 px-1 py-0.5 text-xs">
                          <option value="S">S (0.9)</option><option value="A">A (0.7)</option><option value="discount">discount</option>
                        </select>
                        <button type="submit" className={quietButtonClass}>Set</button>
                      </form>
                      {a.discountLane && <div className="text-xs text-slate-500">in the discount lane</div>}
                    </td>
                    <td className="py-2 text-xs">{a.status}</td>
                    <td className="py-2 text-right">
                      {a.status !== "revoked" && (
                        <ActionButton action={agentAction} fields={{ agentId: a.id, status: a.status === "suspended" ? "active" : "suspended" }} label={a.status === "suspended" ? "Reactivate" : "Suspend"} danger={a.status !== "suspended"} />
                      )}
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
