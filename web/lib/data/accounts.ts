import "server-only";
import { hashPassword, newId, passwordProblem, verifyPassword } from "@wellspring/db/core";
import { addressKey } from "../client-address";
import { db } from "../db";
import { recordSeen } from "../links";
import { waitText } from "../format";
import { mailInBackground, portalUrl, sendMail } from "../mail";
import { SIGNUP_ADDRESS, SIGNUP_NOTICE_ACCOUNT, signupAddressKey, signupNoticeKey, takeAttempt } from "../throttle";
import type { Actor } from "./actor";

const EMAIL = /^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$/;

export type FieldErrors = Partial<Record<"email" | "password" | "name" | "current" | "form", string>>;

/**
 * Creates an account (user, and owner when asked). The answer is the same whether the email was new or
 * already had an account (then its owner gets a mail, at most one an hour, and nothing changes), and so is
 * the work done before answering (the password is hashed either way): sign-up does not tell who has an
 * account. Throttled per client address. A new account's address and device are recorded for account links. The first admin is made with `npm run admin -- create-admin`.
 */
export async function signUp(
  input: { email: string; password: string; name: string; owner: boolean },
  context: { clientAddress: string; deviceId?: string | null; now?: Date },
): Promise<{ ok: true } | { ok: false; errors: FieldErrors }> {
  const email = input.email.trim().toLowerCase();
  const errors: FieldErrors = {};
  if (!EMAIL.test(email)) errors.email = "Enter an email address like name@company.com.";
  const problem = passwordProblem(input.password);
  if (problem) errors.password = problem;
  if (input.name.length > 80) errors.name = "Use at most 80 characters.";
  if (Object.keys(errors).length) return { ok: false, errors };
  const gate = await takeAttempt([{ key: signupAddressKey(addressKey(context.clientAddress)), policy: SIGNUP_ADDRESS }], context.now);
  if (!gate.ok) return { ok: false, errors: { form: `Too many sign-ups from your network. Try again in ${waitText(gate.waitMs)}.` } };
  const passwordHash = await hashPassword(input.password);
  try {
    const id = newId("usr");
    await db().user.create({ data: { id, email, name: input.name.trim() || null, passwordHash, isOwner: input.owner } });
    await recordSeen(id, "signup", context.clientAddress, context.deviceId ?? null);
  } catch (error) {
    if ((error as { code?: string }).code !== "P2002") throw error;
    mailInBackground(() => noticeSignupAttempt(email, context.now));
  }
  return { ok: true };
}

async function noticeSignupAttempt(email: string, now: Date | undefined): Promise<void> {
  const gate = await takeAttempt([{ key: signupNoticeKey(email), policy: SIGNUP_NOTICE_ACCOUNT }], now);
  if (!gate.ok) return;
  const url = portalUrl();
  await sendMail({
    kind: "signup_attempt",
    to: email,
    subject: "Someone tried to create a Wellspring account with your address",
    text: [
      `Someone (perhaps you) tried to create a new Wellspring account with ${email}, which already has one.`,
      "Nothing was changed, and no new account was made.",
      "",
      `To sign in: ${url}/signin`,
      `Forgot your password? ${url}/forgot-password`,
      "",
      "If it was not you, you can ignore this message.",
    ].join("\n"),
  });
}

/** Changes the caller's password (the current one is required) and ends every session of the account. */
export async function changePassword(actor: Actor, current: string, next: string): Promise<{ ok: true } | { ok: false; errors: FieldErrors }> {
  const user = await db().user.findUnique({ where: { id: actor.userId } });
  if (!user || !(await verifyPassword(current, user.passwordHash))) return { ok: false, errors: { current: "This is not your current password." } };
  const problem = passwordProblem(next);
  if (problem) return { ok: false, errors: { password: problem } };
  const passwordHash = await hashPassword(next);
  await db().$transaction([
    db().user.update({ where: { id: actor.userId }, data: { passwordHash, sessionVersion: { increment: 1 } } }),
    db().auditEvent.create({ data: { actor: `user:${actor.userId}`, action: "account.password_changed", subject: `user:${actor.userId}` } }),
  ]);
  return { ok: true };
}

/** Ends every session of the caller's account, this one included. */
export async function signOutEverywhere(actor: Actor): Promise<void> {
  await db().$transaction([
    db().user.update({ where: { id: actor.userId }, data: { sessionVersion: { increment: 1 } } }),
    db().auditEvent.create({ data: { actor: `user:${actor.userId}`, action: "account.signed_out_everywhere", subject: `user:${actor.userId}` } }),
  ]);
}
