"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../lib/data/actor";
import { redeemCode } from "../../../lib/data/billing";
import { usd } from "../../../lib/format";
import { formText } from "../../../lib/form";

export async function redeemAction(_prev: { ok?: string; error?: string } | null, form: FormData): Promise<{ ok?: string; error?: string }> {
  const actor = await requireActor();
  const code = formText(form, "code").trim();
  if (!code) return { error: "Enter a code." };
  const r = await redeemCode(actor, code);
  if (!r.ok) return { error: r.error };
  revalidatePath("/app");
  revalidatePath("/app/billing");
  return { ok: `${usd(r.amountMicros)} added to your balance.` };
}
