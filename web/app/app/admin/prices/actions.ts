"use server";
import { revalidatePath } from "next/cache";
import { requireActor, requireAdmin } from "../../../../lib/data/actor";
import { usd } from "../../../../lib/format";
import { currentPrices, diffTables, parseDraft, publishDraft } from "../../../../lib/data/prices";
import { formText } from "../../../../lib/form";

export interface DraftState {
  error?: string;
  diff?: { key: string; change: string; before: string; after: string }[];
  published?: number;
}

/** Per 1M tokens, in the editor's own unit (USD): "$1.10 / $4.40 / $0.275". */
const show = (p?: { inputMicrosPerMTok: bigint; outputMicrosPerMTok: bigint; cachedInputMicrosPerMTok: bigint }) =>
  p ? `${usd(p.inputMicrosPerMTok)} / ${usd(p.outputMicrosPerMTok)} / ${usd(p.cachedInputMicrosPerMTok)}` : "—";

export async function draftAction(_prev: DraftState | null, form: FormData): Promise<DraftState> {
  const actor = await requireActor();
  requireAdmin(actor);
  const parsed = parseDraft(formText(form, "draft"));
  if (!parsed.ok) return { error: parsed.error };
  const current = await currentPrices();
  const diff = diffTables(current?.prices ?? [], parsed.entries).map((d) => ({ key: d.key, change: d.change, before: show(d.before), after: show(d.after) }));
  if (form.get("intent") !== "publish") return { diff };
  if (diff.length === 0) return { diff, error: "Nothing changed: a new version would be identical to the current one." };
  const ver = await publishDraft(actor, parsed.entries, formText(form, "note").trim().slice(0, 200));
  revalidatePath("/app/prices");
  revalidatePath("/app/admin/prices");
  return { diff, published: ver };
}
