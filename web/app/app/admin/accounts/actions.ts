"use server";
import { revalidatePath } from "next/cache";
import { redirect } from "next/navigation";
import { requireActor } from "../../../../lib/data/actor";
import { setAgent, setUserStatus, unlockSignin } from "../../../../lib/data/admin";
import { sendResetLinkFor } from "../../../../lib/data/password-reset";
import { formText } from "../../../../lib/form";

export async function userStatusAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  await setUserStatus(actor, formText(form, "userId"), form.get("status") === "active" ? "active" : "suspended", "from the admin accounts page");
  revalidatePath("/app/admin/accounts");
}

export async function sendResetLinkAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  const userId = formText(form, "userId");
  let notice: "reset-sent" | "reset-failed";
  try {
    notice = (await sendResetLinkFor(actor, userId)) ? "reset-sent" : "reset-failed";
  } catch {
    notice = "reset-failed"; // the mail module has logged why
  }
  redirect(`/app/admin/accounts?q=${encodeURIComponent(userId)}&notice=${notice}`);
}

export async function unlockSigninAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  await unlockSignin(actor, formText(form, "userId"));
  revalidatePath("/app/admin/accounts");
}

export async function agentAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  const tier = formText(form, "tier");
  const status = formText(form, "status");
  await setAgent(actor, formText(form, "agentId"), {
    ...(tier === "S" || tier === "A" || tier === "discount" ? { tier } : {}),
    ...(status === "active" || status === "suspended" ? { status } : {}),
  });
  revalidatePath("/app/admin/accounts");
}
