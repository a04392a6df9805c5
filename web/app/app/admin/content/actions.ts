"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../../lib/data/actor";
import { addRule, removeRule } from "../../../../lib/data/content";
import { formText } from "../../../../lib/form";

export async function addRuleAction(_prev: { error?: string; done?: boolean } | null, form: FormData): Promise<{ error?: string; done?: boolean }> {
  const actor = await requireActor();
  const term = formText(form, "term").trim();
  const list = formText(form, "list").trim() || "default";
  if (!term) return { error: "Write the term to refuse." };
  const r = await addRule(actor, list, term);
  if (!r.ok) return { error: r.error };
  revalidatePath("/app/admin/content");
  return { done: true };
}

export async function removeRuleAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  await removeRule(actor, formText(form, "id"));
  revalidatePath("/app/admin/content");
}
