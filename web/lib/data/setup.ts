import "server-only";
import { administratorExists, completeSetup, type AdministratorErrors } from "@wellspring/gateway";
import { db } from "../db";

/** Whether the first-run page still offers its form (no administrator exists yet). */
export async function setupOpen(): Promise<boolean> {
  return !(await administratorExists(db()));
}

/** Makes the first administrator with a setup token (gateway/src/ops/administrators.ts). */
export async function setUpFirstAdministrator(input: {
  token: string;
  email: string;
  password: string;
}): Promise<{ ok: true } | { ok: false; errors: AdministratorErrors }> {
  const r = await completeSetup(db(), input);
  if (r.ok) return { ok: true };
  if (r.reason === "closed") return { ok: false, errors: { form: "Setup is already done: an administrator exists. Sign in instead." } };
  return { ok: false, errors: r.errors };
}
