"use server";
import type { AdministratorErrors } from "@wellspring/gateway";
import { setUpFirstAdministrator } from "../../lib/data/setup";

export async function setupAction(_prev: (AdministratorErrors & { done?: boolean }) | null, form: FormData): Promise<AdministratorErrors & { done?: boolean }> {
  const password = String(form.get("password") ?? "");
  if (password !== String(form.get("confirm") ?? "")) return { password: "The two passwords differ." };
  const r = await setUpFirstAdministrator({ token: String(form.get("token") ?? ""), email: String(form.get("email") ?? ""), password });
  return r.ok ? { done: true } : r.errors;
}
