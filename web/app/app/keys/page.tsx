import { Fragment } from "react";
import { requireActor } from "../../../lib/data/actor";
import { listKeys } from "../../../lib/data/keys";
import { usd, utc, utcDate } from "../../../lib/format";
import { ConfirmAction } from "../../client-ui";
import { Card, CommandBlock, Empty, PageTitle, Table } from "../../ui";
import { revokeKeyAction } from "./actions";
import { CreateKeyForm } from "./create-key-form";
import { EditKeyRestriction } from "./key-restriction";

export const metadata = { title: "API keys — Wellspring" };

export default async function KeysPage() {
  const actor = await requireActor();
  const keys = await listKeys(actor);
  const gateway = process.env.WELLSPRING_PUBLIC_API_URL ?? process.env.WELLSPRING_GATEWAY_URL ?? "http://127.0.0.1:8787";
  return (
    <>
      <PageTitle title="API keys" subtitle="Use a key with the OpenAI or Anthropic SDKs: change only the base URL and the key." />
      <div className="grid gap-6 lg:grid-cols-3">
        <div className="lg:col-span-2">
          <Card title="Your keys">
            {keys.length === 0 ? (
              <Empty testId="keys-empty">No keys yet. Create one with the form on this page, then make your first call with the quick start below.</Empty>
            ) : (
              <Table testId="keys-table" columns={["Name", "Key", "Limits", "Last used", ""]}>
                {keys.map((k) => (
                  <Fragment key={k.id}>
                    <tr className="border-t border-slate-100 align-top">
                      <td className="max-w-[14rem] break-words py-2 font-medium">
                        {k.name}
                        {k.status === "revoked" && <span className="ml-2 rounded bg-slate-100 px-1.5 py-0.5 text-xs text-slate-500">revoked</span>}
                        {k.status === "suspended" && (
                          <span
                            className="ml-2 rounded bg-amber-50 px-1.5 py-0.5 text-xs text-amber-700"
                            title="An administrator suspended this key; calls with it are refused. Ask the hub's operator why."
                          >
                            suspended by an administrator
                          </span>
                        )}
                      </td>
                      <td className="py-2 font-mono text-xs text-slate-600">{k.prefix}…</td>
                      <td className="py-2 text-xs text-slate-500">
                        {k.allowedModels.length ? k.allowedModels.join(", ") : "all models"}
                        {k.rpmLimit !== null && (
                          <div data-testid="key-use-rpm">
                            {k.use.requestsLastMinute} of {k.rpmLimit} requests/min
                          </div>
                        )}
                        {k.tpmLimit !== null && (
                          <div data-testid="key-use-tpm">
                            {k.use.tokensLastMinute} of {k.tpmLimit} tokens/min
                          </div>
                        )}
                        {k.concurrencyLimit !== null && <div>at most {k.concurrencyLimit} requests at once</div>}
                        {k.monthlyBudgetMicros !== null && (
                          <div data-testid="key-use-budget">
                            {usd(k.use.chargedThisMonthMicros)} of {usd(k.monthlyBudgetMicros)} this month (UTC)
                          </div>
                        )}
                        {k.expiresAt && <div>expires {utcDate(k.expiresAt)}</div>}
                        <div data-testid="key-agents" className="[overflow-wrap:anywhere]">
                          {k.allowedOwners.length ? `served only by agents of ${k.allowedOwners.join(", ")}` : "served by any owner's agents"}
                          {k.minAgentTier === "S" ? ", tier S only" : k.minAgentTier === "A" ? ", tier A or S" : ""}
                        </div>
                      </td>
                      <td className="py-2 text-xs text-slate-500">{k.lastUsedAt ? utc(k.lastUsedAt) : "never"}</td>
                      <td className="py-2 text-right">
                        {k.status !== "revoked" && (
                          <ConfirmAction
                            action={revokeKeyAction}
                            fields={{ keyId: k.id }}
                            label="Revoke"
                            ariaLabel={`Revoke ${k.name}`}
                            question={`Revoke “${k.name}”? Calls with it stop at once.`}
                            confirmLabel="Yes, revoke"
                          />
                        )}
                      </td>
                    </tr>
                    {k.status === "active" && (
                      <tr>
                        <td colSpan={5} className="pb-2 text-xs text-slate-500">
                          <EditKeyRestriction keyId={k.id} keyName={k.name} owners={k.allowedOwners} minTier={k.minAgentTier} />
                        </td>
                      </tr>
                    )}
                  </Fragment>
                ))}
              </Table>
            )}
          </Card>
          <div className="mt-6">
            <Card title="Quick start">
              <p className="mb-2 text-xs text-slate-500">
                Put a key in <code>WELLSPRING_API_KEY</code>, then:
              </p>
              <CommandBlock
                testId="quickstart-curl"
                text={`curl ${gateway}/v1/chat/completions \\
  -H "Authorization: Bearer $WELLSPRING_API_KEY" -H "content-type: application/json" \\
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'`}
              />
              <p className="mb-2 mt-4 text-xs text-slate-500">With the official SDKs (Node.js), only the base URL changes:</p>
              <CommandBlock
                testId="quickstart-sdk"
                text={`new OpenAI({ baseURL: "${gateway}/v1", apiKey: process.env.WELLSPRING_API_KEY })
new Anthropic({ baseURL: "${gateway}", apiKey: process.env.WELLSPRING_API_KEY })`}
              />
            </Card>
          </div>
        </div>
        <Card title="Create a key">
          <CreateKeyForm activeKeyIds={keys.filter((k) => k.status === "active").map((k) => k.id)} />
        </Card>
      </div>
    </>
  );
}
