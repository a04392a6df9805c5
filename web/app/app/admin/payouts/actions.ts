"use server";
import { revalidatePath } from "next/cache";
import { requireActor, requireAdmin } from "../../../../lib/data/actor";
import { pool } from "../../../../lib/db";
import { Treasury } from "@wellspring/gateway";
import { formText } from "../../../../lib/form";

export async function decidePayoutAction(_prev: { error?: string } | null, form: FormData): Promise<{ error?: string }> {
  const actor = await requireActor();
  requireAdmin(actor);
  const decision = form.get("decision") === "paid" ? "paid" : "cancelled";
  const reference = formText(form, "reference").trim();
  if (decision === "paid" && !reference) return { error: "Enter the payment reference (bank transfer id…)." };
  const r = await new Treasury(pool()).decidePayout(`user:${actor.userId}`, formText(form, "payoutId"), decision, reference || undefined);
  if (r === "not_pending") return { error: "This payout was already decided." };
  revalidatePath("/app/admin/payouts");
  return {};
}
