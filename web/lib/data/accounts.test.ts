/**
 * Sign-in, sessions, sign-up and password reset in the portal's data layer, against real PostgreSQL with an
 * injected clock: failures slow an attacker down but never lock the real owner out; a password change, a
 * reset and "sign out everywhere" end older sessions; sign-up and reset requests answer the same for any
 * address; a reset link works once, before it expires, and arrives through a real SMTP server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestSmtp } from "../../../e2e/support/smtp.ts";
import { hashPassword, newId } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import type { Actor } from "./actor.ts";

let database: TestDatabase;
let auth: typeof import("../auth.ts");
let accounts: typeof import("./accounts.ts");
let reset: typeof import("./password-reset.ts");
let actorMod: typeof import("./actor.ts");
let mail: typeof import("../mail.ts");
let throttle: typeof import("../throttle.ts");

beforeAll(async () => {
  database = await createTestDatabase();
  process.env.DATABASE_URL = database.url;
  process.env.NEXTAUTH_URL = "http://portal.test:3000";
  delete process.env.SMTP_URL;
  auth = await import("../auth.ts");
  accounts = await import("./accounts.ts");
  reset = await import("./password-reset.ts");
  actorMod = await import("./actor.ts");
  mail = await import("../mail.ts");
  throttle = await import("../throttle.ts");
});

afterAll(async () => {
  await mail?.mailSettled();
  await database?.drop();
});

// The run's own minute, less one: an admin's view of a slow-down reads the real clock (a fixed date here stopped
// matching it a day after the date, once the failures had aged past SIGNIN_ACCOUNT.idleResetMs).
const T0 = Math.floor(Date.now() / 60_000) * 60_000 - 60_000;
const at = (ms: number) => new Date(T0 + ms);

/** A user with a password, made directly (sign-up has its own tests). */
async function user(email: string, password: string): Promise<{ id: string; email: string; password: string }> {
  const id = newId("usr");
  await database.db.user.create({ data: { id, email, passwordHash: await hashPassword(password) } });
  return { id, email, password };
}

/** One sign-in attempt: "ok", "invalid", or the throttled code with its wait in seconds. */
async function attempt(email: string, password: string, clientAddress: string, now: Date): Promise<string> {
  try {
    await auth.authorizeSignin({ email, password, clientAddress }, now);
    return "ok";
  } catch (error) {
    return (error as Error).message;
  }
}

const outbox = (to: string) => database.db.outboxMail.findMany({ where: { toAddress: to }, orderBy: { createdAt: "asc" } });

describe("sign-in throttling", () => {
  it("five wrong passwords, then the right one signs in after at most the stated wait (no lockout)", async () => {
    const u = await user("owner1@acct.test", "the right password 1");
    const results: string[] = [];
    let ms = 0;
    for (let i = 0; i < 5; i++) {
      let r = await attempt(u.email, "a wrong password", "198.51.100.1", at(ms));
      // The form waits out what it is told; so does this test, on the injected clock.
      const wait = /^throttled:account:(\d+)$/.exec(r);
      if (wait) {
        ms += Number(wait[1]) * 1000;
        r = await attempt(u.email, "a wrong password", "198.51.100.1", at(ms));
      }
      results.push(r);
      ms += 100;
    }
    expect(results).toEqual(["invalid", "invalid", "invalid", "invalid", "invalid"]);
    const refused = await attempt(u.email, u.password, "198.51.100.1", at(ms));
    const seconds = Number(/^throttled:account:(\d+)$/.exec(refused)?.[1]);
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThanOrEqual(4); // after 5 failures from one address: 1 s · 2^(5 − 3)
    expect(await attempt(u.email, u.password, "198.51.100.1", at(ms + seconds * 1000))).toBe("ok");
    // The success ended this address's streak for the account.
    expect(await database.db.throttleCounter.findUnique({ where: { key: throttle.signinPairKey(u.email, "198.51.100.1") } })).toBeNull();
  });

  it("a guesser spread over many addresses slows the account to one try per 30 s; the owner waits at most that", async () => {
    const u = await user("owner2@acct.test", "the right password 2");
    let ms = 0;
    const waits: number[] = [];
    for (let i = 0; i < 24; i++) {
      const r = await attempt(u.email, `guess ${i}`, `203.0.113.${i}`, at(ms));
      const wait = /^throttled:account:(\d+)$/.exec(r);
      if (wait) {
        waits.push(Number(wait[1]));
        ms += Number(wait[1]) * 1000;
        expect(await attempt(u.email, `guess ${i}`, `203.0.113.${i}`, at(ms))).toBe("invalid");
      } else expect(r).toBe("invalid");
    }
    expect(Math.max(...waits)).toBe(throttle.SIGNIN_ACCOUNT.delayMsMax / 1000);
    // The owner, from home, right after the latest guess: told to wait at most 30 s, then in.
    const refused = await attempt(u.email, u.password, "192.0.2.44", at(ms));
    const seconds = Number(/^throttled:account:(\d+)$/.exec(refused)?.[1]);
    expect(seconds).toBeLessThanOrEqual(30);
    expect(await attempt(u.email, u.password, "192.0.2.44", at(ms + seconds * 1000))).toBe("ok");
  });

  it("one address may fail 50 times over all accounts in 15 minutes, then it waits for the window", async () => {
    const address = "198.51.100.77";
    for (let i = 0; i < throttle.SIGNIN_ADDRESS.countMax; i++) {
      expect(await attempt(`nobody${i}@acct.test`, "some password 1", address, at(i * 1000))).toBe("invalid");
    }
    const r = await attempt("nobody-else@acct.test", "some password 1", address, at(60_000));
    expect(r).toBe(`throttled:network:${(throttle.SIGNIN_ADDRESS.windowMs - 60_000) / 1000}`);
    // Another address is not affected.
    expect(await attempt("nobody-else@acct.test", "some password 1", "198.51.100.78", at(60_000))).toBe("invalid");
  });

  it("an unknown email is throttled exactly like a known one (the throttle tells nothing)", async () => {
    const u = await user("owner3@acct.test", "the right password 3");
    const run = async (email: string, addr: string) => {
      const out: string[] = [];
      for (let i = 0; i < 5; i++) out.push(await attempt(email, "wrong password", addr, at(i * 100)));
      return out;
    };
    expect(await run(u.email, "192.0.2.90")).toEqual(await run("no-such-owner3@acct.test", "192.0.2.91"));
  });

  it("an admin sees an account's slow-down and unlocks it", async () => {
    const admin = await import("./admin.ts");
    const u = await user("owner4@acct.test", "the right password 4");
    for (let i = 0; i < 4; i++) await attempt(u.email, "wrong password", "192.0.2.120", at(i * 10_000));
    const adminActor: Actor = {
      userId: (await user("admin4@acct.test", "admin password 44")).id,
      email: "admin4@acct.test",
      name: null,
      isOwner: false,
      isAdmin: true,
    };
    const found = (await admin.searchAccounts(adminActor, u.email)).users[0]!;
    expect(found.signinThrottle).toMatchObject({ failures: 4, addresses: 1 });
    expect(await attempt(u.email, u.password, "192.0.2.120", at(30_001))).toMatch(/^throttled:account:/);
    expect(await admin.unlockSignin(adminActor, u.id)).toBe(true);
    expect((await admin.searchAccounts(adminActor, u.email)).users[0]!.signinThrottle).toBeNull();
    expect(await attempt(u.email, u.password, "192.0.2.120", at(30_001))).toBe("ok");
  });
});

describe("sessions", () => {
  async function signedIn(email: string, password: string, ms: number): Promise<{ id: string; sv: number }> {
    const r = await auth.authorizeSignin({ email, password, clientAddress: "192.0.2.200" }, at(ms));
    return { id: r.id, sv: r.sessionVersion };
  }
  const actorOf = (u: { id: string; email: string }): Actor => ({ userId: u.id, email: u.email, name: null, isOwner: false, isAdmin: false });

  it("a password change ends every session signed in before it; a new sign-in works", async () => {
    const u = await user("sess1@acct.test", "first password 111");
    const laptop = await signedIn(u.email, u.password, 0);
    const phone = await signedIn(u.email, u.password, 1000);
    expect(await actorMod.actorOfSession(laptop.id, laptop.sv)).not.toBeNull();
    expect(await accounts.changePassword(actorOf(u), u.password, "second password 222")).toEqual({ ok: true });
    expect(await actorMod.actorOfSession(laptop.id, laptop.sv)).toBeNull();
    expect(await actorMod.actorOfSession(phone.id, phone.sv)).toBeNull();
    const again = await signedIn(u.email, "second password 222", 2000);
    expect(await actorMod.actorOfSession(again.id, again.sv)).toMatchObject({ userId: u.id });
  });

  it("sign out everywhere ends every session of the account and no other account's", async () => {
    const u = await user("sess2@acct.test", "first password 333");
    const other = await user("sess3@acct.test", "first password 444");
    const a = await signedIn(u.email, u.password, 0);
    const b = await signedIn(other.email, other.password, 0);
    await accounts.signOutEverywhere(actorOf(u));
    expect(await actorMod.actorOfSession(a.id, a.sv)).toBeNull();
    expect(await actorMod.actorOfSession(b.id, b.sv)).toMatchObject({ userId: other.id });
    expect(await database.db.auditEvent.count({ where: { action: "account.signed_out_everywhere", subject: `user:${u.id}` } })).toBe(1);
  });

  it("a session without a version (signed before versions existed) is refused", async () => {
    const u = await user("sess4@acct.test", "first password 555");
    expect(await actorMod.actorOfSession(u.id, -1)).toBeNull();
  });
});

describe("sign-up", () => {
  it("answers a taken address as a new one; the taken one's owner gets one mail an hour, nothing else changes", async () => {
    const owner = await user("taken@acct.test", "owner's password 1");
    const input = (email: string) => ({ email, password: "attacker password 1", name: "x", owner: true });
    const fresh = await accounts.signUp(input("fresh@acct.test"), { clientAddress: "192.0.2.10", now: at(0) });
    const taken = await accounts.signUp(input("TAKEN@acct.test"), { clientAddress: "192.0.2.10", now: at(0) });
    expect(taken).toEqual(fresh);
    expect(fresh).toEqual({ ok: true });
    await accounts.signUp(input("taken@acct.test"), { clientAddress: "192.0.2.10", now: at(60_000) });
    await mail.mailSettled();
    const mails = await outbox(owner.email);
    expect(mails.map((m) => [m.kind, m.subject])).toEqual([["signup_attempt", "Someone tried to create a Wellspring account with your address"]]);
    expect(mails[0]!.text).toContain("http://portal.test:3000/forgot-password");
    expect(await outbox("fresh@acct.test")).toEqual([]);
    const after = await database.db.user.findUniqueOrThrow({ where: { id: owner.id } });
    expect({ isOwner: after.isOwner, sv: after.sessionVersion }).toEqual({ isOwner: false, sv: 0 });
    expect(await attempt(owner.email, owner.password, "192.0.2.10", at(120_000))).toBe("ok");
  });

  it("is throttled per client address", async () => {
    const address = "192.0.2.11";
    for (let i = 0; i < throttle.SIGNUP_ADDRESS.countMax; i++) {
      expect(
        await accounts.signUp({ email: `many${i}@acct.test`, password: "some password 1", name: "", owner: false }, { clientAddress: address, now: at(i) }),
      ).toEqual({ ok: true });
    }
    expect(
      await accounts.signUp({ email: "one-more@acct.test", password: "some password 1", name: "", owner: false }, { clientAddress: address, now: at(1000) }),
    ).toEqual({ ok: false, errors: { form: "Too many sign-ups from your network. Try again in 60 minutes." } });
    expect(await database.db.user.findUnique({ where: { email: "one-more@acct.test" } })).toBeNull();
    expect(
      await accounts.signUp(
        { email: "one-more@acct.test", password: "some password 1", name: "", owner: false },
        { clientAddress: "192.0.2.12", now: at(1000) },
      ),
    ).toEqual({ ok: true });
  });
});

describe("password reset", () => {
  const linkIn = (text: string) => /\/reset-password\/([A-Za-z0-9_-]{43})/.exec(text)?.[1];

  it("answers the same for any address; only an active account gets a link", async () => {
    const u = await user("reset1@acct.test", "old password 111");
    const known = await reset.requestPasswordReset({ email: "Reset1@acct.test" }, { clientAddress: "192.0.2.30", now: at(0) });
    const unknown = await reset.requestPasswordReset({ email: "nobody-reset@acct.test" }, { clientAddress: "192.0.2.30", now: at(0) });
    expect(known).toEqual({ ok: true });
    expect(unknown).toEqual(known);
    await mail.mailSettled();
    const mails = await outbox(u.email);
    expect(mails.map((m) => m.kind)).toEqual(["password_reset"]);
    expect(mails[0]!.text).toContain("within 30 minutes");
    expect(await outbox("nobody-reset@acct.test")).toEqual([]);
    // Only the token's hash is stored.
    const token = linkIn(mails[0]!.text)!;
    const row = await database.db.passwordReset.findFirstOrThrow({ where: { userId: u.id } });
    expect(row.tokenHash).not.toContain(token);
    expect(row.tokenHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("a link works once, sets the password, ends every session and clears the sign-in slow-down", async () => {
    const u = await user("reset2@acct.test", "old password 222");
    const before = await auth.authorizeSignin({ email: u.email, password: u.password, clientAddress: "192.0.2.31" }, at(0));
    for (let i = 0; i < 5; i++) await attempt(u.email, "wrong password", "192.0.2.32", at(i * 100));
    await reset.requestPasswordReset({ email: u.email }, { clientAddress: "192.0.2.31", now: at(1000) });
    await mail.mailSettled();
    const token = linkIn((await outbox(u.email))[0]!.text)!;
    expect(await reset.resetLinkUsable(token, at(2000))).toBe(true);
    expect(await reset.resetPassword(token, "short", at(2000))).toEqual({ ok: false, errors: { password: "Use at least 10 characters." } });
    expect(await reset.resetLinkUsable(token, at(2000))).toBe(true); // a refused password does not use the link up
    expect(await reset.resetPassword(token, "new password 222", at(2000))).toEqual({ ok: true });
    expect(await reset.resetPassword(token, "other password 222", at(3000))).toEqual({
      ok: false,
      errors: { form: "This link has expired or was already used. Ask for a new one." },
    });
    expect(await reset.resetLinkUsable(token, at(3000))).toBe(false);
    expect(await actorMod.actorOfSession(before.id, before.sessionVersion)).toBeNull();
    expect(await attempt(u.email, u.password, "192.0.2.32", at(4000))).toBe("invalid");
    expect(await attempt(u.email, "new password 222", "192.0.2.32", at(5000))).toBe("ok");
  });

  it("two uses of one link at the same moment: exactly one sets its password", async () => {
    const u = await user("reset3@acct.test", "old password 333");
    await reset.requestPasswordReset({ email: u.email }, { clientAddress: "192.0.2.33", now: at(0) });
    await mail.mailSettled();
    const token = linkIn((await outbox(u.email))[0]!.text)!;
    const results = await Promise.all(["first password 333", "second password 333"].map((p) => reset.resetPassword(token, p, at(1000))));
    expect(results.filter((r) => r.ok)).toHaveLength(1);
  });

  it("a link expires after 30 minutes", async () => {
    const u = await user("reset4@acct.test", "old password 444");
    await reset.requestPasswordReset({ email: u.email }, { clientAddress: "192.0.2.34", now: at(0) });
    await mail.mailSettled();
    const token = linkIn((await outbox(u.email))[0]!.text)!;
    expect(await reset.resetLinkUsable(token, at(reset.PASSWORD_RESET_TTL_MS - 1))).toBe(true);
    expect(await reset.resetLinkUsable(token, at(reset.PASSWORD_RESET_TTL_MS))).toBe(false);
    expect(await reset.resetPassword(token, "new password 444", at(reset.PASSWORD_RESET_TTL_MS))).toMatchObject({ ok: false });
    expect(await attempt(u.email, u.password, "192.0.2.34", at(reset.PASSWORD_RESET_TTL_MS + 1))).toBe("ok");
  });

  it("requests are throttled per email address and per client address", async () => {
    const perAccount = throttle.RESET_ACCOUNT.countMax;
    for (let i = 0; i < perAccount; i++)
      expect(await reset.requestPasswordReset({ email: "reset5@acct.test" }, { clientAddress: `192.0.2.${40 + i}`, now: at(i) })).toEqual({ ok: true });
    expect(await reset.requestPasswordReset({ email: "reset5@acct.test" }, { clientAddress: "192.0.2.49", now: at(10) })).toEqual({
      ok: false,
      errors: { form: "Too many reset requests. Try again in 60 minutes." },
    });
    for (let i = 0; i < throttle.RESET_ADDRESS.countMax; i++)
      expect(await reset.requestPasswordReset({ email: `r${i}@acct.test` }, { clientAddress: "192.0.2.50", now: at(i) })).toEqual({ ok: true });
    expect(await reset.requestPasswordReset({ email: "another@acct.test" }, { clientAddress: "192.0.2.50", now: at(100) })).toMatchObject({ ok: false });
    await mail.mailSettled();
  });

  it("through a real SMTP server: the mail arrives, its link sets the password, the old session is refused", async () => {
    const smtp = await startTestSmtp();
    const received = smtp.received;
    process.env.SMTP_URL = smtp.url;
    process.env.MAIL_FROM = "Wellspring <accounts@portal.test>";
    try {
      const u = await user("smtp1@acct.test", "old password 666");
      const old = await auth.authorizeSignin({ email: u.email, password: u.password, clientAddress: "192.0.2.60" }, at(0));
      expect(await reset.requestPasswordReset({ email: u.email }, { clientAddress: "192.0.2.60", now: at(1000) })).toEqual({ ok: true });
      await mail.mailSettled();
      expect(received.map((m) => m.to)).toEqual([[u.email]]);
      const message = received[0]!.data;
      expect(message).toMatch(/^From: Wellspring <accounts@portal\.test>$/m);
      expect(message).toMatch(/^Subject: Reset your Wellspring password$/m);
      // Decode the body as a mail client would (quoted-printable soft line breaks).
      const body = message.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
      const link = /http:\/\/portal\.test:3000\/reset-password\/([A-Za-z0-9_-]{43})/.exec(body);
      expect(link).not.toBeNull();
      expect(await outbox(u.email)).toEqual([]); // with SMTP configured, nothing is kept
      expect(await reset.resetPassword(link![1]!, "new password 666", at(2000))).toEqual({ ok: true });
      expect(await attempt(u.email, "new password 666", "192.0.2.60", at(3000))).toBe("ok");
      expect(await actorMod.actorOfSession(old.id, old.sessionVersion)).toBeNull();
    } finally {
      delete process.env.SMTP_URL;
      delete process.env.MAIL_FROM;
      await smtp.close();
    }
  });

  it("an admin sends a user a link; the audit trail says who", async () => {
    const u = await user("reset7@acct.test", "old password 777");
    const adminId = (await user("admin7@acct.test", "admin password 777")).id;
    const adminActor: Actor = { userId: adminId, email: "admin7@acct.test", name: null, isOwner: false, isAdmin: true };
    expect(await reset.sendResetLinkFor(adminActor, u.id, at(0))).toBe(true);
    expect((await outbox(u.email)).map((m) => m.kind)).toEqual(["password_reset"]);
    expect(await database.db.auditEvent.count({ where: { action: "account.password_reset_sent", actor: `user:${adminId}`, subject: `user:${u.id}` } })).toBe(1);
    await expect(reset.sendResetLinkFor({ ...adminActor, isAdmin: false }, u.id, at(0))).rejects.toThrow("Only administrators");
  });
});
