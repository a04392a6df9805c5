import "server-only";
import nodemailer, { type Transporter } from "nodemailer";
import { newId } from "@wellspring/db/core";
import { createLogger } from "@wellspring/gateway";
import { db } from "./db";

/**
 * Mail from the portal (password reset links, "someone tried to sign up with your address"). With `SMTP_URL`
 * set it goes out through nodemailer; without, it is kept in the `mail_outbox` table, which admins read on
 * the Outbox page. A message's address, subject and text are never logged (a reset link is a credential).
 */
export type MailKind = "password_reset" | "signup_attempt";

export interface Mail {
  kind: MailKind;
  to: string;
  subject: string;
  text: string;
}

/** Time an SMTP connection, greeting and each socket read may take, ms. */
export const SMTP_TIMEOUT_MS = 10_000;
/** Outbox rows are deleted once this old, ms (a reset link in them expires long before). */
export const OUTBOX_RETENTION_MS = 7 * 24 * 3600 * 1000;

const log = createLogger({ proc: "portal" });
const g = globalThis as { __wsMailer?: { url: string; transport: Transporter } };

/** Where mail goes: "smtp" when SMTP_URL is set, else "outbox". */
export function mailMode(): "smtp" | "outbox" {
  return process.env.SMTP_URL ? "smtp" : "outbox";
}

/** The From address: MAIL_FROM, else no-reply at the portal's host. */
export function mailFrom(): string {
  if (process.env.MAIL_FROM) return process.env.MAIL_FROM;
  return `Wellspring <no-reply@${new URL(portalUrl()).hostname}>`;
}

/** The portal's public URL (NEXTAUTH_URL; npm start sets it), for links in mail. */
export function portalUrl(): string {
  const url = process.env.NEXTAUTH_URL;
  if (!url) throw new Error("The portal needs NEXTAUTH_URL (its public URL) to put links in mail");
  return url.replace(/\/+$/, "");
}

function transport(url: string): Transporter {
  if (g.__wsMailer?.url !== url) {
    g.__wsMailer = {
      url,
      transport: nodemailer.createTransport({ url, connectionTimeout: SMTP_TIMEOUT_MS, greetingTimeout: SMTP_TIMEOUT_MS, socketTimeout: SMTP_TIMEOUT_MS }),
    };
  }
  return g.__wsMailer.transport;
}

/** Sends one message (or keeps it in the outbox); throws when the SMTP server refuses or cannot be reached. */
export async function sendMail(mail: Mail): Promise<void> {
  const url = process.env.SMTP_URL;
  if (url) {
    const id = newId("mail");
    try {
      await transport(url).sendMail({ from: mailFrom(), to: mail.to, subject: mail.subject, text: mail.text, headers: { "X-Wellspring-Mail-Id": id } });
    } catch (error) {
      const e = error as { code?: string; responseCode?: number };
      log.error("mail.failed", { mailId: id, kind: mail.kind, code: e.code ?? null, smtpStatus: e.responseCode ?? null });
      throw new Error(`Cannot send mail: the SMTP server answered ${e.responseCode ?? e.code ?? "with an error"}`);
    }
    log.info("mail.sent", { mailId: id, kind: mail.kind });
    return;
  }
  const id = newId("mail");
  try {
    await db().outboxMail.create({ data: { id, kind: mail.kind, toAddress: mail.to, subject: mail.subject, text: mail.text } });
    await db().outboxMail.deleteMany({ where: { createdAt: { lt: new Date(Date.now() - OUTBOX_RETENTION_MS) } } });
  } catch (error) {
    log.error("mail.outbox_failed", { mailId: id, kind: mail.kind, error: (error as Error).name });
    throw new Error("Cannot keep the mail in the outbox: the database refused it");
  }
}

const pending = new Set<Promise<void>>();

/**
 * Runs a job that ends in mail (look up the account, make a link, send) after the caller has answered, so a
 * page whose answer must not depend on whether an account exists takes the same time either way. Failures
 * are logged where they happen (by kind and id only).
 */
export function mailInBackground(job: () => Promise<void>): void {
  const p = job().catch((error: unknown) => {
    log.error("mail.job_failed", { error: (error as Error).name });
  });
  pending.add(p);
  void p.finally(() => pending.delete(p));
}

/** Resolves when every background mail job has finished (tests). */
export async function mailSettled(): Promise<void> {
  while (pending.size) await Promise.all([...pending]);
}
