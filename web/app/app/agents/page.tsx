import { redirect } from "next/navigation";
import { requireActor } from "../../../lib/data/actor";
import { listAgents, type AgentRow } from "../../../lib/data/owner";
import { utc } from "../../../lib/format";
import { ActionButton, Card, Empty, PageTitle, Table } from "../../ui";
import { agentSwitchAction } from "./actions";
import { EnrollForm } from "./enroll-form";

export const metadata = { title: "Agents — Wellspring" };

const TIER_SHARE: Record<string, string> = { S: "0.9", A: "0.7" };

/** What the owner does next for this agent, or null when it is serving. */
function nextStep(a: AgentRow): string | null {
  if (a.status === "suspended" || a.status === "revoked") return `An administrator ${a.status} this agent: it gets no requests. Ask the hub's operator why.`;
  if (a.status === "paused") return "Paused by you: it gets no new requests until you resume it.";
  if (!a.version) return "Not connected yet. In its folder, write data/config.json and run ./wellspring-agent start (steps 2 and 3 of the enrollment).";
  if (!a.online) return "Offline. In its folder, run ./wellspring-agent start (it keeps itself running after that).";
  if (a.models.length === 0) return "Online but offering no models: list them in data/config.json, then restart it.";
  return null;
}

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
              <Empty testId="agents-empty">
                No agents yet. Name one in “Enroll an agent” and run the three commands it prints on the machine that holds your provider keys.
              </Empty>
            ) : (
              <Table testId="agents-table" columns={["Agent", "State", "Tier", "Models", ""]}>
                {agents.map((a) => (
                  <tr key={a.id} className="border-t border-slate-100 align-top">
                    <td className="py-2">
                      <div className="break-words font-medium">{a.name}</div>
                      <div className="font-mono text-xs text-slate-500">{a.id}</div>
                      <div className="text-xs text-slate-500">
                        {a.version ? `v${a.version}` : "never connected"}
                        {a.priceVer ? ` · prices v${a.priceVer}` : ""}
                      </div>
                      {a.updateRequired && (
                        <p
                          role="alert"
                          data-testid={`agent-update-required-${a.id}`}
                          className="mt-1 max-w-sm rounded bg-red-50 px-2 py-1 text-xs text-red-800"
                        >
                          {a.updateRequired.message}
                        </p>
                      )}
                      {a.duplicate && (
                        <p role="alert" data-testid={`agent-duplicate-${a.id}`} className="mt-1 max-w-sm rounded bg-amber-50 px-2 py-1 text-xs text-amber-800">
                          Another copy of this agent tried to connect at {utc(a.duplicate.at)} from {a.duplicate.address}
                          {a.duplicate.attempts > 1 ? ` (${a.duplicate.attempts} attempts)` : ""}; only one may run. The hub refused it and keeps the connected
                          one. Stop the other copy, or enroll that machine as a new agent.
                        </p>
                      )}
                      {a.endpoint && (
                        <p role="alert" data-testid={`agent-endpoint-${a.id}`} className="mt-1 max-w-sm rounded bg-red-50 px-2 py-1 text-xs text-red-800">
                          At {utc(a.endpoint.at)} {a.endpoint.host} resolved on this agent&apos;s machine to {a.endpoint.outside.join(", ")}, outside the
                          provider&apos;s networks{a.endpoint.reports > 1 ? ` (${a.endpoint.reports} reports)` : ""}. The agent refuses those calls. Check the
                          machine&apos;s hosts file, DNS and proxy settings.
                        </p>
                      )}
                    </td>
                    <td className="py-2 text-xs">
                      <span data-testid={`agent-state-${a.id}`} className={a.online ? "font-medium text-emerald-700" : "text-slate-500"}>
                        {a.online ? "Online" : "Offline"}
                      </span>
                      {a.status !== "active" && <span className="ml-1 rounded bg-amber-50 px-1.5 py-0.5 text-amber-700">{a.status}</span>}
                      <div className="text-slate-500">{a.lastSeenAt ? `seen ${utc(a.lastSeenAt)}` : "not seen yet"}</div>
                      {nextStep(a) && (
                        <p data-testid={`agent-next-${a.id}`} className="mt-1 max-w-xs text-slate-600">
                          {nextStep(a)}
                        </p>
                      )}
                    </td>
                    <td className="py-2 text-xs">
                      {a.discountLane ? (
                        <span title="You earn the discount share; your agent gets traffic first">discount lane</span>
                      ) : (
                        <span>
                          {a.tier} ({TIER_SHARE[a.tier] ?? a.tier} of list price)
                        </span>
                      )}
                    </td>
                    <td className="max-w-[12rem] break-words py-2 text-xs text-slate-600">
                      {a.models.length ? a.models.map((m) => m.split(":").slice(1).join(":")).join(", ") : "—"}
                    </td>
                    <td className="space-y-1 py-2 text-right">
                      {(a.status === "active" || a.status === "paused") && (
                        <ActionButton
                          action={agentSwitchAction}
                          fields={{ agentId: a.id, what: "pause", on: String(a.status === "active") }}
                          label={a.status === "active" ? "Pause" : "Resume"}
                        />
                      )}
                      <ActionButton
                        action={agentSwitchAction}
                        fields={{ agentId: a.id, what: "lane", on: String(!a.discountLane) }}
                        label={a.discountLane ? "Leave discount lane" : "Join discount lane"}
                      />
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
