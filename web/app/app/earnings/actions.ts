"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../lib/data/actor";
import { requestPayout, setPayoutDestination } from "../../../lib/data/owner";
import { parseUsd, usd } from "../../../lib/format";
import { formText } from "../../../lib/form";

export async function payoutAction(_prev: { ok?: string; error?: string } | null, form: FormData): Promise<{ ok?: string; error?: string }> {
  const actor = await requireActor();
  const micros = parseUsd(formText(form, "amount"));
  if (micros === null) return { error: "Enter an amount in dollars, e.g. 12.50." };
  const r = await requestPayout(actor, micros);
  if (!r.ok) return { error: r.error };
  revalidatePath("/app/earnings");
  return { ok: `Payout of ${usd(micros)} requested.` };
}

export async function payoutDestinationAction(_prev: { ok?: string; error?: string } | null, form: FormData): Promise<{ ok?: string; error?: string }> {
  const actor = await requireActor();
  const problem = await setPayoutDestination(actor, formText(form, "destination"));
  if (problem) return { error: problem };
  revalidatePath("/app/earnings");
  return { ok: "Payout destination saved." };
}
