"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../lib/data/actor";
import {
  createKey,
  KeyInputError,
  revokeKey,
  unknownModels,
  updateKeyRestriction,
  validateNewKey,
  validateRestriction,
  type KeyErrors,
} from "../../../lib/data/keys";
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
    owners: formText(form, "owners"),
    minTier: formText(form, "minTier"),
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
    if (error instanceof KeyInputError) return { errors: { [error.field]: error.message } };
    return { errors: { form: (error as Error).message } };
  }
}

export type RestrictKeyState = { errors?: KeyErrors; saved?: number } | null;

/** Changes which agents may serve one of the signed-in user's keys (owners by email, lowest tier). */
export async function restrictKeyAction(_prev: RestrictKeyState, form: FormData): Promise<RestrictKeyState> {
  const actor = await requireActor();
  const parsed = validateRestriction({ owners: formText(form, "owners"), minTier: formText(form, "minTier") });
  if (!parsed.ok) return { errors: parsed.errors };
  try {
    const changed = await updateKeyRestriction(actor, formText(form, "keyId"), parsed.restriction);
    if (!changed) return { errors: { form: "No such active key." } };
  } catch (error) {
    if (error instanceof KeyInputError) return { errors: { [error.field]: error.message } };
    throw error;
  }
  revalidatePath("/app/keys");
  return { saved: Date.now() };
}

export async function revokeKeyAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  await revokeKey(actor, formText(form, "keyId"));
  revalidatePath("/app/keys");
}
