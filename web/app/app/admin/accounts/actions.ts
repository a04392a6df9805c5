"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../../lib/data/actor";
import { setAgent, setUserStatus } from "../../../../lib/data/admin";

export async function userStatusAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  await setUserStatus(actor, String(form.get("userId") ?? ""), form.get("status") === "active" ? "active" : "suspended", "from the admin accounts page");
  revalidatePath("/app/admin/accounts");
}

export async function agentAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  const tier = String(form.get("tier") ?? "");
  const status = String(form.get("status") ?? "");
  await setAgent(actor, String(form.get("agentId") ?? ""), {
    ...(tier === "S" || tier === "A" || tier === "discount" ? { tier } : {}),
    ...(status === "active" || status === "suspended" ? { status } : {}),
  });
  revalidatePath("/app/admin/accounts");
}
