import "server-only";
import { createHash, randomBytes } from "node:crypto";
import { hashPassword, newId, passwordProblem } from "@wellspring/db/core";
import { addressKey } from "../client-address";
import { db } from "../db";
import { waitText } from "../format";
import { mailInBackground, portalUrl, sendMail } from "../mail";
import { clearSigninThrottle, RESET_ACCOUNT, RESET_ADDRESS, resetAccountKey, resetAddressKey, takeAttempt } from "../throttle";
import { requireAdmin, type Actor } from "./actor";
import type { FieldErrors } from "./accounts";

/**
 * Password reset by emailed link. The link carries a random token (32 bytes); only its SHA-256 is stored. A
 * link works once, for PASSWORD_RESET_TTL_MS, for an active account; using it sets the new password, ends
 * every session of the account and every other open link, and clears the account's sign-in slow-down.
 */
export const PASSWORD_RESET_TTL_MS = 30 * 60 * 1000;
const TOKEN_BYTES = 32;
/** A token as it appears in a link (base64url of TOKEN_BYTES). */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

/** Makes a link for the user and mails it; the token itself exists only in that mail. */
async function issueReset(user: { id: string; email: string }, requestedBy: string, now: Date): Promise<void> {
  const token = randomBytes(TOKEN_BYTES).toString("base64url");
  await db().passwordReset.create({
    data: {
      id: newId("prt"),
      userId: user.id,
      tokenHash: hashToken(token),
      requestedBy,
      createdAt: now,
      expiresAt: new Date(now.getTime() + PASSWORD_RESET_TTL_MS),
    },
  });
  const minutes = PASSWORD_RESET_TTL_MS / 60_000;
  await sendMail({
    kind: "password_reset",
    to: user.email,
    subject: "Reset your Wellspring password",
    text: [
      `Someone asked to reset the password of the Wellspring account ${user.email}.`,
      `To choose a new password, open this link within ${minutes} minutes (it works once):`,
      "",
      `${portalUrl()}/reset-password/${token}`,
      "",
      "Setting a new password signs the account out everywhere.",
      "If you did not ask for this, ignore this message: your password stays as it is.",
    ].join("\n"),
  });
}

export type ResetRequestResult = { ok: true } | { ok: false; errors: FieldErrors };

/**
 * The "Forgot password?" form. The answer is the same for any address (the link is made and sent after
 * answering, only for an active account); throttled per client address and per email address.
 */
export async function requestPasswordReset(input: { email: string }, context: { clientAddress: string; now?: Date }): Promise<ResetRequestResult> {
  const email = input.email.trim().toLowerCase();
  if (!email || email.length > 320) return { ok: false, errors: { email: "Enter the email address of your account." } };
  const now = context.now ?? new Date();
  const gate = await takeAttempt(
    [
      { key: resetAddressKey(addressKey(context.clientAddress)), policy: RESET_ADDRESS },
      { key: resetAccountKey(email), policy: RESET_ACCOUNT },
    ],
    now,
  );
  if (!gate.ok) return { ok: false, errors: { form: `Too many reset requests. Try again in ${waitText(gate.waitMs)}.` } };
  mailInBackground(async () => {
    const user = await db().user.findUnique({ where: { email } });
    if (user && user.status === "active") await issueReset(user, "user", now);
  });
  return { ok: true };
}

/** An admin sends a user a reset link (the admin never sees it, unless mail goes to the outbox). */
export async function sendResetLinkFor(actor: Actor, userId: string, now: Date = new Date()): Promise<boolean> {
  requireAdmin(actor);
  const user = await db().user.findUnique({ where: { id: userId } });
  if (!user || user.status !== "active") return false;
  await issueReset(user, `user:${actor.userId}`, now);
  await db().auditEvent.create({ data: { actor: `user:${actor.userId}`, action: "account.password_reset_sent", subject: `user:${userId}` } });
  return true;
}

/** Whether a link may still be used (the reset page asks before showing its form; this uses nothing up). */
export async function resetLinkUsable(token: string, now: Date = new Date()): Promise<boolean> {
  if (!TOKEN_SHAPE.test(token)) return false;
  const row = await db().passwordReset.findUnique({ where: { tokenHash: hashToken(token) }, include: { user: { select: { status: true } } } });
  return Boolean(row && !row.usedAt && row.expiresAt > now && row.user.status === "active");
}

const LINK_UNUSABLE = "This link has expired or was already used. Ask for a new one.";

/** Sets a new password through a link: once, before it expires; ends every session of the account. */
export async function resetPassword(token: string, password: string, now: Date = new Date()): Promise<{ ok: true } | { ok: false; errors: FieldErrors }> {
  if (!TOKEN_SHAPE.test(token)) return { ok: false, errors: { form: LINK_UNUSABLE } };
  const problem = passwordProblem(password);
  if (problem) return { ok: false, errors: { password: problem } };
  const passwordHash = await hashPassword(password);
  const email = await db().$transaction(async (tx) => {
    const row = await tx.passwordReset.findUnique({ where: { tokenHash: hashToken(token) }, include: { user: { select: { email: true, status: true } } } });
    if (!row || row.user.status !== "active") return null;
    // The one statement that uses the link up: a second use, in parallel or later, changes no row.
    const used = await tx.passwordReset.updateMany({ where: { id: row.id, usedAt: null, expiresAt: { gt: now } }, data: { usedAt: now } });
    if (used.count !== 1) return null;
    await tx.passwordReset.updateMany({ where: { userId: row.userId, usedAt: null }, data: { usedAt: now } });
    await tx.user.update({ where: { id: row.userId }, data: { passwordHash, sessionVersion: { increment: 1 } } });
    await tx.auditEvent.create({
      data: {
        actor: `user:${row.userId}`,
        action: "account.password_reset",
        subject: `user:${row.userId}`,
        detail: { resetId: row.id, requestedBy: row.requestedBy },
      },
    });
    return row.user.email;
  });
  if (!email) return { ok: false, errors: { form: LINK_UNUSABLE } };
  await clearSigninThrottle(email);
  return { ok: true };
}
