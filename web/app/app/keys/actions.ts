"use server";
import { revalidatePath } from "next/cache";
import { requireActor } from "../../../lib/data/actor";
import { createKey, revokeKey, validateNewKey, type KeyErrors } from "../../../lib/data/keys";

export type CreateKeyState = { errors?: KeyErrors; secret?: string; name?: string } | null;

export async function createKeyAction(_prev: CreateKeyState, form: FormData): Promise<CreateKeyState> {
  const actor = await requireActor();
  const parsed = validateNewKey({
    name: String(form.get("name") ?? ""),
    models: String(form.get("models") ?? ""),
    rpm: String(form.get("rpm") ?? ""),
    budgetUsd: String(form.get("budget") ?? ""),
    expires: String(form.get("expires") ?? ""),
  });
  if (!parsed.ok) return { errors: parsed.errors };
  try {
    const key = await createKey(actor, parsed.key);
    revalidatePath("/app/keys");
    return { secret: key.secret, name: parsed.key.name };
  } catch (error) {
    return { errors: { form: (error as Error).message } };
  }
}

export async function revokeKeyAction(form: FormData): Promise<void> {
  const actor = await requireActor();
  await revokeKey(actor, String(form.get("keyId") ?? ""));
  revalidatePath("/app/keys");
}
