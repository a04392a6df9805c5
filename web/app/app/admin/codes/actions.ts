"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../../lib/data/actor";
import { createBatch } from "../../../../lib/data/admin";
import { parseUsd } from "../../../../lib/format";
import { formText } from "../../../../lib/form";

export type BatchState = { error?: string; codes?: string[]; batchId?: string } | null;

export async function batchAction(_prev: BatchState, form: FormData): Promise<BatchState> {
  const actor = await requireActor();
  const amountMicros = parseUsd(formText(form, "amount"));
  if (amountMicros === null) return { error: "Value per code in dollars, e.g. 5 or 12.50." };
  const count = Number(form.get("count"));
  if (!Number.isInteger(count) || count < 1 || count > 10_000) return { error: "Number of codes: 1 to 10,000." };
  const expires = formText(form, "expires").trim();
  const expiresAt = expires ? new Date(`${expires}T23:59:59Z`) : null;
  if (expiresAt && (Number.isNaN(expiresAt.getTime()) || expiresAt.getTime() < Date.now())) return { error: "Expiry must be a future date (UTC)." };
  try {
    const batch = await createBatch(actor, {
      amountMicros,
      count,
      note: formText(form, "note").trim().slice(0, 200),
      expiresAt,
    });
    revalidatePath("/app/admin/codes");
    return { codes: batch.codes, batchId: batch.batchId };
  } catch (error) {
    return { error: (error as Error).message };
  }
}
