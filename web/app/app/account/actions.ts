"use server";
import { requireActor } from "../../../lib/data/actor";
import { changePassword, signOutEverywhere, type FieldErrors } from "../../../lib/data/accounts";
import { formText } from "../../../lib/form";

export async function changePasswordAction(_prev: (FieldErrors & { done?: boolean }) | null, form: FormData): Promise<FieldErrors & { done?: boolean }> {
  const actor = await requireActor();
  const next = formText(form, "password");
  if (next !== formText(form, "confirm")) return { password: "The two new passwords differ." };
  const r = await changePassword(actor, formText(form, "current"), next);
  return r.ok ? { done: true } : r.errors;
}

export async function signOutEverywhereAction(): Promise<{ done: true }> {
  await signOutEverywhere(await requireActor());
  return { done: true };
}
