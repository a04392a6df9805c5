"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../lib/data/actor";
import { requestPayout } from "../../../lib/data/owner";
import { usd } from "../../../lib/format";

export async function payoutAction(_prev: { ok?: string; error?: string } | null, form: FormData): Promise<{ ok?: string; error?: string }> {
  const actor = await requireActor();
  const m = /^(\d{1,9})(?:\.(\d{1,6}))?$/.exec(String(form.get("amount") ?? "").trim());
  if (!m) return { error: "Enter an amount in dollars, e.g. 12.50." };
  const micros = BigInt(m[1]!) * 1_000_000n + BigInt((m[2] ?? "").padEnd(6, "0"));
  const r = await requestPayout(actor, micros);
  if (!r.ok) return { error: r.error };
  revalidatePath("/app/earnings");
  return { ok: `Payout of ${usd(micros)} requested.` };
}
