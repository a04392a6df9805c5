import { redirect } from "next/navigation";
import { requireActor } from "../../../lib/data/actor";
import { listAgents, type AgentRow } from "../../../lib/data/owner";
import { usd, utc } from "../../../lib/format";
import { ActionButton, Card, Empty, PageTitle, Table } from "../../ui";
import { agentSwitchAction } from "./actions";
import { EnrollForm } from "./enroll-form";
import { RateForm } from "./rate-form";

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

/** Where the owner's discount-lane request stands: pending, or the last refusal with the administrator's note. */
function LaneNote({ agent: a }: { agent: AgentRow }) {
  if (a.discountLaneRequestedAt)
    return (
      <div data-testid={`agent-lane-${a.id}`} className="mt-1 text-amber-700">
        Discount lane requested {utc(a.discountLaneRequestedAt)}: waiting for an administrator.
      </div>
    );
  const d = a.discountLaneDecision;
  if (d && !d.approved && !a.discountLane)
    return (
      <div data-testid={`agent-lane-${a.id}`} className="mt-1 text-slate-600">
        Discount lane refused {utc(d.at)}
        {d.note ? `: ${d.note}` : ""}
      </div>
    );
  return null;
}

const perMinute = (n: number | null, unit: string) => (n === null ? `no ${unit} limit` : `${n.toLocaleString("en-US")} ${unit}/min`);

/** The rate mode in force and, in auto mode, what the agent learnt from its provider. */
function RateSummary({ agent: a }: { agent: AgentRow }) {
  if (a.rateMode === "expert") {
    const parts = [
      a.rpmLimit !== null ? `${a.rpmLimit.toLocaleString("en-US")} requests/min` : null,
      a.tpmLimit !== null ? `${a.tpmLimit.toLocaleString("en-US")} tokens/min` : null,
      a.concurrencyLimit !== null ? `${a.concurrencyLimit.toLocaleString("en-US")} at once` : null,
    ].filter(Boolean);
    return (
      <p data-testid={`agent-rate-summary-${a.id}`}>
        Expert: {parts.join(", ")}
        {a.reported && a.reported.rpm !== a.rpmLimit && <span className="text-amber-700"> (the agent has not confirmed it yet)</span>}
      </p>
    );
  }
  return (
    <p data-testid={`agent-rate-summary-${a.id}`}>
      Auto
      {a.reported && (a.reported.rpm !== null || a.reported.tpm !== null) ? (
        <span className="text-slate-500">
          {" "}
          — learnt from the provider: {perMinute(a.reported.rpm, "requests")}, {perMinute(a.reported.tpm, "tokens")} (reported {utc(a.reported.at)})
        </span>
      ) : (
        <span className="text-slate-500"> — no limit learnt from the provider yet</span>
      )}
    </p>
  );
}

/**
 * The receipt chain's two tails (the hub's now, the agent's last report), today's earnings by both sides, disputed
 * receipts, and a chain the hub stopped at a receipt it could not keep. "Out
 * of sync" is the hub's own comparison (its `ledger_out_of_sync` flag): the two tails are read at different
 * moments, so a report older than the hub's newest receipt is not a disagreement.
 */
function LedgerCell({ ledger }: { ledger: AgentRow["ledger"] }) {
  const short = (hash: string | null) => (hash ? hash.slice(0, 8) : "—");
  return (
    <div className="space-y-0.5">
      {ledger.outOfSync && (
        <p role="alert" data-testid="ledger-out-of-sync" className="max-w-xs rounded bg-red-50 px-2 py-1 text-red-800">
          Ledger out of sync from receipt {ledger.outOfSync.firstDifferingSeq} (seen {utc(ledger.outOfSync.since)}): the agent takes no new calls. Run
          ./wellspring-agent ledger verify in its folder and contact the hub&apos;s operator.
        </p>
      )}
      {ledger.stopped && (
        <p role="alert" data-testid="ledger-stopped" className="max-w-xs rounded bg-red-50 px-2 py-1 text-red-800">
          Receipts stopped at receipt {ledger.stopped.seq} (since {utc(ledger.stopped.since)}): the hub refused it ({ledger.stopped.refused}
          {ledger.stopped.detail ? `: ${ledger.stopped.detail}` : ""}) and keeps no later receipt until its operator resolves it.
        </p>
      )}
      {ledger.disputed.latest && (
        <p data-testid="ledger-disputed" className="max-w-xs rounded bg-amber-50 px-2 py-1 text-amber-900">
          {ledger.disputed.count} disputed receipt{ledger.disputed.count === 1 ? "" : "s"}: the hub keeps {ledger.disputed.count === 1 ? "it" : "them"}{" "}
          unconfirmed. Latest: receipt {ledger.disputed.latest.seq} ({ledger.disputed.latest.reason}
          {ledger.disputed.latest.detail ? `: ${ledger.disputed.latest.detail}` : ""}).
        </p>
      )}
      <div data-testid="ledger-hub-tail">
        Hub: receipt {ledger.hubTail.seq} <span className="font-mono text-slate-500">{short(ledger.hubTail.hash)}</span>
      </div>
      <div data-testid="ledger-agent-tail">
        {ledger.agentTail ? (
          <>
            Agent: receipt {ledger.agentTail.seq} <span className="font-mono text-slate-500">{short(ledger.agentTail.hash)}</span>
            <span className="text-slate-500"> · reported {utc(ledger.agentTail.reportedAt)}</span>
          </>
        ) : (
          "Agent: not reported yet"
        )}
      </div>
      <div data-testid="ledger-today">
        Today: hub {usd(ledger.today.hubEarningMicros)} · agent {usd(ledger.today.agentEarningMicros)}
        <span className="text-slate-500">
          {" "}
          ({ledger.today.receipts} receipt{ledger.today.receipts === 1 ? "" : "s"}
          {ledger.today.agentUnpriced > 0 ? `, ${ledger.today.agentUnpriced} the agent could not price` : ""})
        </span>
      </div>
    </div>
  );
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
              <Table testId="agents-table" columns={["Agent", "State", "Tier", "Models", "Rate", "Ledger", ""]}>
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
                      {a.breakers.length > 0 && (
                        <p role="alert" data-testid={`agent-breakers-${a.id}`} className="mt-1 max-w-sm rounded bg-red-50 px-2 py-1 text-xs text-red-800">
                          Failing, so kept from traffic:{" "}
                          {a.breakers
                            .map((b) => `${b.model} (${b.state === "open" ? "circuit open" : "testing with one request"} since ${utc(b.since)})`)
                            .join("; ")}
                          . The hub sends it requests again once a test request succeeds; check the agent's log and the provider key.
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
                      <LaneNote agent={a} />
                    </td>
                    <td className="max-w-[12rem] break-words py-2 text-xs text-slate-600">
                      {a.models.length ? a.models.map((m) => m.split(":").slice(1).join(":")).join(", ") : "—"}
                    </td>
                    <td className="py-2 text-xs" data-testid={`agent-rate-${a.id}`}>
                      <RateSummary agent={a} />
                      {a.status !== "revoked" && (
                        <RateForm agentId={a.id} rateMode={a.rateMode} rpmLimit={a.rpmLimit} tpmLimit={a.tpmLimit} concurrencyLimit={a.concurrencyLimit} />
                      )}
                    </td>
                    <td className="py-2 text-xs" data-testid={`agent-ledger-${a.id}`}>
                      <LedgerCell ledger={a.ledger} />
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
                        fields={{ agentId: a.id, what: "lane", on: String(!(a.discountLane || a.discountLaneRequestedAt)) }}
                        label={a.discountLane ? "Leave discount lane" : a.discountLaneRequestedAt ? "Withdraw lane request" : "Request discount lane"}
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
