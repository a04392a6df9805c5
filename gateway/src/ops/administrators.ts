/**
 * Administrators: made by one function, whether by the operator CLI (`npm run admin -- create-admin`) or the
 * portal's first-run page (`/setup`), with one audit event. The first-run page needs a one-time setup token: a
 * hub that starts with no administrator makes one, prints its link and keeps it in `DATA_DIR/admin-setup-url`
 * (mode 0600); only its SHA-256 is stored. Setup closes for good once any administrator exists.
 */
import { createHash } from "node:crypto";
import { hashPassword, newId, passwordProblem, randomToken, type Db } from "@wellspring/db/core";
import { recordAudit, type Actor } from "./audit.ts";

/** How long a setup token can be used, ms (a hub that restarts with still no administrator makes a new one). */
export const SETUP_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;
/** Setup tokens: `wss_` + 40 base32 characters (200 bits). */
const SETUP_TOKEN_PREFIX = "wss_";
const SETUP_TOKEN_BODY_CHARS = 40;
/** Serialises first-run attempts (pg_advisory_xact_lock key), so two visitors cannot both become the first admin. */
const SETUP_LOCK_KEY = 0x77_73_73_74; // "wsst"

const EMAIL = /^[^@\s]{1,64}@[^@\s]{1,190}$/;

export type AdministratorErrors = Partial<Record<"email" | "password" | "token" | "form", string>>;

export class AdministratorInputError extends Error {
  constructor(readonly errors: AdministratorErrors) {
    super(Object.values(errors).join(" "));
    this.name = "AdministratorInputError";
  }
}

type Tx = Parameters<Parameters<Db["$transaction"]>[0]>[0];

function checkInput(email: string, password: string): AdministratorErrors {
  const errors: AdministratorErrors = {};
  if (!EMAIL.test(email)) errors.email = "Enter an email address like you@example.com.";
  const problem = passwordProblem(password);
  if (problem) errors.password = problem;
  return errors;
}

async function upsertAdministrator(tx: Tx, email: string, passwordHash: string, actor: Actor): Promise<{ id: string; email: string }> {
  const user = await tx.user.upsert({
    where: { email },
    create: { id: newId("usr"), email, passwordHash, isAdmin: true },
    // A new password ends the account's other sessions, as a password change does.
    update: { passwordHash, isAdmin: true, sessionVersion: { increment: 1 } },
  });
  await recordAudit(tx, actor, "account.admin_created", `user:${user.id}`);
  return { id: user.id, email: user.email };
}

/**
 * Makes `email` an administrator with `password` (a new account, or an existing one given the role and the
 * password). `actor` goes into the audit trail (`cli:<user>`, `setup:<token id>`).
 */
export async function createAdministrator(db: Db, input: { email: string; password: string; actor: Actor }): Promise<{ id: string; email: string }> {
  const email = input.email.trim().toLowerCase();
  const errors = checkInput(email, input.password);
  if (Object.keys(errors).length) throw new AdministratorInputError(errors);
  const passwordHash = await hashPassword(input.password);
  return db.$transaction((tx) => upsertAdministrator(tx, email, passwordHash, input.actor));
}

export async function administratorExists(db: Db): Promise<boolean> {
  return (await db.user.count({ where: { isAdmin: true } })) > 0;
}

const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

/** A new setup token while no administrator exists (null once one does). The token is returned once. */
export async function issueSetupToken(db: Db, now = new Date()): Promise<{ token: string; expiresAt: Date } | null> {
  if (await administratorExists(db)) return null;
  const token = SETUP_TOKEN_PREFIX + randomToken(SETUP_TOKEN_BODY_CHARS);
  const expiresAt = new Date(now.getTime() + SETUP_TOKEN_TTL_MS);
  await db.adminSetupToken.create({ data: { id: newId("stp"), tokenHash: hashToken(token), createdAt: now, expiresAt } });
  return { token, expiresAt };
}

export type SetupOutcome =
  { ok: true; userId: string; email: string } | { ok: false; reason: "closed" } | { ok: false; reason: "invalid"; errors: AdministratorErrors };

/**
 * The first-run page's one action: with a valid, unused, unexpired setup token and no administrator yet, makes
 * the first administrator and closes setup (every token used). Serialised by an advisory lock, so of two
 * visitors racing with the same token exactly one succeeds.
 */
export async function completeSetup(db: Db, input: { token: string; email: string; password: string }, now = new Date()): Promise<SetupOutcome> {
  const email = input.email.trim().toLowerCase();
  const errors = checkInput(email, input.password);
  const token = input.token.trim();
  if (!token) errors.token = "Paste the setup link's token (it is in the hub's start log and in DATA_DIR/admin-setup-url).";
  if (Object.keys(errors).length) return { ok: false, reason: "invalid", errors };
  if (await administratorExists(db)) return { ok: false, reason: "closed" };
  const passwordHash = await hashPassword(input.password);
  return db.$transaction(async (tx): Promise<SetupOutcome> => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(${SETUP_LOCK_KEY})`;
    if ((await tx.user.count({ where: { isAdmin: true } })) > 0) return { ok: false, reason: "closed" };
    const found = await tx.adminSetupToken.findUnique({ where: { tokenHash: hashToken(token) } });
    if (!found || found.usedAt || found.expiresAt <= now) {
      return {
        ok: false,
        reason: "invalid",
        errors: {
          token: "This setup token is not valid: it was mistyped, used or has expired. Restart the hub for a new link, or use `npm run admin -- create-admin`.",
        },
      };
    }
    await tx.adminSetupToken.updateMany({ where: { usedAt: null }, data: { usedAt: now } });
    const user = await upsertAdministrator(tx, email, passwordHash, `setup:${found.id}`);
    return { ok: true, userId: user.id, email: user.email };
  });
}
