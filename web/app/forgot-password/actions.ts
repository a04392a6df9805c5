"use server";
import { headers } from "next/headers";
import { clientAddressOf } from "../../lib/client-address";
import type { FieldErrors } from "../../lib/data/accounts";
import { requestPasswordReset } from "../../lib/data/password-reset";
import { formText } from "../../lib/form";

export async function requestResetAction(_prev: (FieldErrors & { sent?: boolean }) | null, form: FormData): Promise<FieldErrors & { sent?: boolean }> {
  const r = await requestPasswordReset({ email: formText(form, "email") }, { clientAddress: clientAddressOf(await headers()) });
  return r.ok ? { sent: true } : r.errors;
}
