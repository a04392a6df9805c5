import { redirect } from "next/navigation";
import { requireActor } from "../../../../lib/data/actor";
import { contentRules } from "../../../../lib/data/content";
import { utc } from "../../../../lib/format";
import { ActionButton, Card, Empty, PageTitle, Table } from "../../../ui";
import { removeRuleAction } from "./actions";
import { RuleForm } from "./rule-form";

export const metadata = { title: "Content rules — Wellspring admin" };

export default async function ContentRulesPage() {
  const actor = await requireActor();
  if (!actor.isAdmin) redirect("/app");
  const rules = await contentRules(actor);
  return (
    <>
      <PageTitle
        title="Content rules"
        subtitle="Requests whose text contains one of these terms are refused before they reach any agent (full-width, upper-case and zero-width spellings included). Only a hash of a refused request and the rule are kept. Every gateway applies a change within 2 seconds; each change is audited."
      />
      <Card title="Add a prohibited term">
        <RuleForm />
      </Card>
      <div className="mt-6">
        <Card title={`Active terms (${rules.length})`}>
          {rules.length === 0 ? (
            <Empty>No terms: requests are not screened for content.</Empty>
          ) : (
            <Table testId="content-rules" columns={["List", "Term", "Added (UTC)", ""]}>
              {rules.map((r) => (
                <tr key={r.id} className="border-t border-slate-100">
                  <td className="py-2 font-mono text-xs">{r.list}</td>
                  <td className="py-2">{r.term}</td>
                  <td className="py-2 text-xs text-slate-500">{utc(r.createdAt)}</td>
                  <td className="py-2 text-right">
                    <ActionButton action={removeRuleAction} fields={{ id: r.id }} label="Remove" ariaLabel={`Remove ${r.term}`} danger />
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
