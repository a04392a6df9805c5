"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../../lib/data/actor";
import { decideFlag } from "../../../../lib/data/risk";
import { formText } from "../../../../lib/form";

export async function decideAction(_prev: { error?: string; done?: string } | null, form: FormData): Promise<{ error?: string; done?: string }> {
  const actor = await requireActor();
  const decision = formText(form, "decision");
  if (decision !== "approved" && decision !== "dismissed" && decision !== "suspended") return { error: "Choose approve, dismiss or suspend." };
  const r = await decideFlag(actor, formText(form, "flagId"), decision, formText(form, "note"));
  if (r === "note_required") return { error: "Write a note: it goes into the audit trail." };
  if (r === "not_open") return { error: "This flag was already decided." };
  revalidatePath("/app/admin/risk");
  return { done: decision };
}
