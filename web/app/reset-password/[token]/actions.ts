"use server";
import type { FieldErrors } from "../../../lib/data/accounts";
import { resetPassword } from "../../../lib/data/password-reset";

export async function resetPasswordAction(_prev: (FieldErrors & { done?: boolean }) | null, form: FormData): Promise<FieldErrors & { done?: boolean }> {
  const password = String(form.get("password") ?? "");
  if (password !== String(form.get("confirm") ?? "")) return { password: "The two new passwords differ." };
  const r = await resetPassword(String(form.get("token") ?? ""), password);
  return r.ok ? { done: true } : r.errors;
}
