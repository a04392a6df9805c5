import "server-only";
import { hashPassword, newId, passwordProblem, verifyPassword } from "@wellspring/db/core";
import { db } from "../db";
import type { Actor } from "./actor";

const EMAIL = /^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$/;

export type FieldErrors = Partial<Record<"email" | "password" | "name" | "current" | "form", string>>;

/** Creates an account (user, and owner when asked). The first admin is made with `npm run admin -- create-admin`. */
export async function signUp(input: { email: string; password: string; name: string; owner: boolean }): Promise<{ ok: true } | { ok: false; errors: FieldErrors }> {
  const email = input.email.trim().toLowerCase();
  const errors: FieldErrors = {};
  if (!EMAIL.test(email)) errors.email = "Enter an email address like name@company.com.";
  const problem = passwordProblem(input.password);
  if (problem) errors.password = problem;
  if (input.name.length > 80) errors.name = "Use at most 80 characters.";
  if (Object.keys(errors).length) return { ok: false, errors };
  const passwordHash = await hashPassword(input.password);
  try {
    await db().user.create({ data: { id: newId("usr"), email, name: input.name.trim() || null, passwordHash, isOwner: input.owner } });
  } catch (error) {
    if ((error as { code?: string }).code === "P2002") return { ok: false, errors: { email: "An account with this email exists. Sign in instead." } };
    throw error;
  }
  return { ok: true };
}

export async function changePassword(actor: Actor, current: string, next: string): Promise<{ ok: true } | { ok: false; errors: FieldErrors }> {
  const user = await db().user.findUnique({ where: { id: actor.userId } });
  if (!user || !(await verifyPassword(current, user.passwordHash))) return { ok: false, errors: { current: "This is not your current password." } };
  const problem = passwordProblem(next);
  if (problem) return { ok: false, errors: { password: problem } };
  await db().user.update({ where: { id: actor.userId }, data: { passwordHash: await hashPassword(next) } });
  await db().auditEvent.create({ data: { actor: `user:${actor.userId}`, action: "account.password_changed", subject: `user:${actor.userId}` } });
  return { ok: true };
}
