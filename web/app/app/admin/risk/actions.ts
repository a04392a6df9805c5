"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../../lib/data/actor";
import { decideLane } from "../../../../lib/data/admin";
import { actOnFlagAs, decideFlag } from "../../../../lib/data/risk";
import { formText } from "../../../../lib/form";

export async function decideAction(_prev: { error?: string; done?: string } | null, form: FormData): Promise<{ error?: string; done?: string }> {
  const actor = await requireActor();
  const decision = formText(form, "decision");
  if (decision !== "approved" && decision !== "dismissed" && decision !== "suspended") return { error: "Choose approve, dismiss or suspend." };
  const r = await decideFlag(actor, formText(form, "flagId"), decision, formText(form, "note"));
  if (r === "note_required") return { error: "Write a note: it goes into the audit trail." };
  if (r === "not_open") return { error: "This flag was already decided." };
  revalidatePath("/app/admin/risk");
  revalidatePath(`/app/admin/risk/${formText(form, "flagId")}`);
  return { done: decision };
}

const ACTIONS = ["hold_earnings", "release_earnings", "suspend_subject", "unsuspend_subject"] as const;
const REFUSED: Record<string, string> = {
  no_flag: "There is no such flag.",
  note_required: "Write a note: it goes into the audit trail.",
  note_too_long: "The note is too long (at most 1,000 characters).",
  no_owner: "The flag's subject has no account whose earnings could be held.",
  nothing_available: "The owner has no earnings available to hold.",
  nothing_held: "This flag holds no earnings.",
  no_change: "The subject is not in a state this changes (already suspended or active, revoked, or gone).",
};
const DONE: Record<(typeof ACTIONS)[number], string> = {
  hold_earnings: "Earnings held.",
  release_earnings: "Earnings released.",
  suspend_subject: "Suspended.",
  unsuspend_subject: "Reinstated.",
};

/** An action from a flag's page: hold / release earnings, suspend / reinstate the subject. */
export async function flagAction(_prev: { error?: string; done?: string } | null, form: FormData): Promise<{ error?: string; done?: string }> {
  const actor = await requireActor();
  const action = ACTIONS.find((a) => a === formText(form, "action"));
  if (!action) return { error: "Choose an action." };
  const flagId = formText(form, "flagId");
  const r = await actOnFlagAs(actor, flagId, action, formText(form, "note"));
  if (r.outcome !== "done") return { error: REFUSED[r.outcome] };
  revalidatePath(`/app/admin/risk/${flagId}`);
  return { done: DONE[action] };
}

/** Approve or refuse an owner's discount-lane request (risk review page). */
export async function laneAction(_prev: { error?: string; done?: string } | null, form: FormData): Promise<{ error?: string; done?: string }> {
  const actor = await requireActor();
  const decision = formText(form, "decision");
  if (decision !== "approve" && decision !== "refuse") return { error: "Choose approve or refuse." };
  const r = await decideLane(actor, formText(form, "agentId"), decision === "approve", formText(form, "note"));
  if (r === "note_required") return { error: "Write a note: it goes into the audit trail (and the owner reads a refusal's)." };
  if (r === "note_too_long") return { error: "The note is too long (at most 1,000 characters)." };
  if (r === "no_request") return { error: "This request was already decided or withdrawn." };
  revalidatePath("/app/admin/risk");
  return { done: decision === "approve" ? "Approved." : "Refused." };
}
