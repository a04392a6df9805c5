"use server";
import { requireActor } from "../../../lib/data/actor";
import { changePassword, signOutEverywhere, type FieldErrors } from "../../../lib/data/accounts";

export async function changePasswordAction(_prev: (FieldErrors & { done?: boolean }) | null, form: FormData): Promise<FieldErrors & { done?: boolean }> {
  const actor = await requireActor();
  const next = String(form.get("password") ?? "");
  if (next !== String(form.get("confirm") ?? "")) return { password: "The two new passwords differ." };
  const r = await changePassword(actor, String(form.get("current") ?? ""), next);
  return r.ok ? { done: true } : r.errors;
}

export async function signOutEverywhereAction(): Promise<{ done: true }> {
  await signOutEverywhere(await requireActor());
  return { done: true };
}
