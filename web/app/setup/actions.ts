"use server";
import type { AdministratorErrors } from "@wellspring/gateway";
import { setUpFirstAdministrator } from "../../lib/data/setup";
import { formText } from "../../lib/form";

export async function setupAction(_prev: (AdministratorErrors & { done?: boolean }) | null, form: FormData): Promise<AdministratorErrors & { done?: boolean }> {
  const password = formText(form, "password");
  if (password !== formText(form, "confirm")) return { password: "The two passwords differ." };
  const r = await setUpFirstAdministrator({ token: formText(form, "token"), email: formText(form, "email"), password });
  return r.ok ? { done: true } : r.errors;
}
