"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../lib/data/actor";
import { createKey, revokeKey, unknownModels, validateNewKey, type KeyErrors } from "../../../lib/data/keys";
import { formText } from "../../../lib/form";

export type CreateKeyState = { errors?: KeyErrors; secret?: string; keyId?: string; name?: string } | null;

export async function createKeyAction(_prev: CreateKeyState, form: FormData): Promise<CreateKeyState> {
  const actor = await requireActor();
  const parsed = validateNewKey({
    name: formText(form, "name"),
    models: formText(form, "models"),
    rpm: formText(form, "rpm"),
    tpm: formText(form, "tpm"),
    concurrency: formText(form, "concurrency"),
    budgetUsd: formText(form, "budget"),
    expires: formText(form, "expires"),
  });
  if (!parsed.ok) return { errors: parsed.errors };
  const unknown = await unknownModels(parsed.key.allowedModels);
  if (unknown.length)
    return { errors: { allowedModels: `No model is called ${unknown.map((m) => `“${m}”`).join(", ")}. Use names from the Prices page, e.g. gpt-4o-mini.` } };
  try {
    const key = await createKey(actor, parsed.key);
    revalidatePath("/app/keys");
    return { secret: key.secret, keyId: key.id, name: parsed.key.name };
  } catch (error) {
    return { errors: { form: (error as Error).message } };
  }
}

export async function revokeKeyAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  await revokeKey(actor, formText(form, "keyId"));
  revalidatePath("/app/keys");
}
