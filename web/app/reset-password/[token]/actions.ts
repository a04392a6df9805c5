"use server";
import type { FieldErrors } from "../../../lib/data/accounts";
import { resetPassword } from "../../../lib/data/password-reset";
import { formText } from "../../../lib/form";

export async function resetPasswordAction(_prev: (FieldErrors & { done?: boolean }) | null, form: FormData): Promise<FieldErrors & { done?: boolean }> {
  const password = formText(form, "password");
  if (password !== formText(form, "confirm")) return { password: "The two new passwords differ." };
  const r = await resetPassword(formText(form, "token"), password);
  return r.ok ? { done: true } : r.errors;
}
