"use server";
import { headers } from "next/headers";
import { clientAddressOf } from "../../lib/client-address";
import { signUp, type FieldErrors } from "../../lib/data/accounts";

export async function signUpAction(_prev: FieldErrors | null, form: FormData): Promise<FieldErrors | null> {
  const result = await signUp(
    {
      email: String(form.get("email") ?? ""),
      password: String(form.get("password") ?? ""),
      name: String(form.get("name") ?? ""),
      owner: form.get("owner") === "on",
    },
    { clientAddress: clientAddressOf(await headers()) },
  );
  return result.ok ? {} : result.errors;
}
