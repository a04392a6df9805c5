import { redirect } from "next/navigation";
import { requireActor } from "../../../lib/data/actor";
import { listAgents } from "../../../lib/data/owner";
import { utc } from "../../../lib/format";
import { ActionButton, Card, Empty, PageTitle, Table } from "../../ui";
import { agentSwitchAction } from "./actions";
import { EnrollForm } from "./enroll-form";

export const metadata = { title: "Agents — Wellspring" };

const TIER_SHARE: Record<string, string> = { S: "0.9", A: "0.7" };

export default async function AgentsPage() {
  const actor = await requireActor();
  if (!actor.isOwner) redirect("/app");
  const agents = await listAgents(actor);
  return (
    <>
      <PageTitle title="Agents" subtitle="Your agents run next to your provider keys and connect out to the hub; your keys never leave your machine." />
      <div className="grid gap-6 lg:grid-cols-3">
        <div className="lg:col-span-2">
          <Card title="Your agents">
            {agents.length === 0 ? (
              <Empty>No agents yet. Create an enrollment command and run it where your keys are.</Empty>
            ) : (
              <Table testId="agents-table" columns={["Agent", "State", "Tier", "Models", ""]}>
                  {agents.map((a) => (
                    <tr key={a.id} className="border-t border-slate-100 align-top">
                      <td className="py-2">
                        <div className="font-medium">{a.name}</div>
                        <div className="font-mono text-xs text-slate-500">{a.id}</div>
                        <div className="text-xs text-slate-500">{a.version ? `v${a.version}` : "never connected"}{a.priceVer ? ` · prices v${a.priceVer}` : ""}</div>
                        {a.duplicate && (
                          <p role="alert" data-testid={`agent-duplicate-${a.id}`} className="mt-1 max-w-sm rounded bg-amber-50 px-2 py-1 text-xs text-amber-800">
                            Another copy of this agent tried to connect at {utc(a.duplicate.at)} from {a.duplicate.address}
                            {a.duplicate.attempts > 1 ? ` (${a.duplicate.attempts} attempts)` : ""}; only one may run. The hub refused it and
                            keeps the connected one. Stop the other copy, or enroll that machine as a new agent.
                          </p>
                        )}
                      </td>
                      <td className="py-2 text-xs">
                        <span data-testid={`agent-state-${a.id}`} className={a.online ? "font-medium text-emerald-700" : "text-slate-500"}>{a.online ? "Online" : "Offline"}</span>
                        {a.status !== "active" && <span className="ml-1 rounded bg-amber-50 px-1.5 py-0.5 text-amber-700">{a.status}</span>}
                        <div className="text-slate-500">{a.lastSeenAt ? `seen ${utc(a.lastSeenAt)}` : "not seen yet"}</div>
                      </td>
                      <td className="py-2 text-xs">
                        {a.discountLane ? <span title="You earn the discount share; your agent gets traffic first">discount lane</span> : <span>{a.tier} ({TIER_SHARE[a.tier] ?? a.tier} of list price)</span>}
                      </td>
                      <td className="py-2 text-xs text-slate-600">{a.models.length ? a.models.map((m) => m.split(":").slice(1).join(":")).join(", ") : "—"}</td>
                      <td className="space-y-1 py-2 text-right">
                        {(a.status === "active" || a.status === "paused") && (
                          <ActionButton action={agentSwitchAction} fields={{ agentId: a.id, what: "pause", on: String(a.status === "active") }} label={a.status === "active" ? "Pause" : "Resume"} />
                        )}
                        <ActionButton action={agentSwitchAction} fields={{ agentId: a.id, what: "lane", on: String(!a.discountLane) }} label={a.discountLane ? "Leave discount lane" : "Join discount lane"} />
                      </td>
                    </tr>
                  ))}
              </Table>
            )}
          </Card>
        </div>
        <Card title="Enroll an agent">
          <EnrollForm />
        </Card>
      </div>
    </>
  );
}
