"use server";
import { headers } from "next/headers";
import { clientAddressOf } from "../../lib/client-address";
import { portalDeviceId } from "../../lib/device";
import { signUp, type FieldErrors } from "../../lib/data/accounts";
import { formText } from "../../lib/form";

export async function signUpAction(_prev: FieldErrors | null, form: FormData): Promise<FieldErrors | null> {
  const result = await signUp(
    {
      email: formText(form, "email"),
      password: formText(form, "password"),
      name: formText(form, "name"),
      owner: form.get("owner") === "on",
    },
    { clientAddress: clientAddressOf(await headers()), deviceId: await portalDeviceId() },
  );
  return result.ok ? {} : result.errors;
}
