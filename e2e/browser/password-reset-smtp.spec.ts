/**
 * The portal configured for production mail and a reverse proxy: a second portal process (`web/server.ts`,
 * the one npm start runs, on the same build and database as the test hub) with SMTP_URL pointing at a real
 * local SMTP server and TRUSTED_PROXIES naming the loopback address. The reset mail arrives over SMTP; its
 * link, followed in Chromium, sets a new password that signs in; a session from before is refused. A proxy
 * the portal trusts is believed about the client's address.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, test } from "@playwright/test";
import { startTestSmtp, type TestSmtp } from "../support/smtp.ts";
import { createDb, hashPassword, newId, type Db } from "@wellspring/db";
import { ROOT, startProc, TSX, type Proc } from "../stack/harness.ts";
import { HUB_DATA_DIR, hubDatabaseUrl, signInOnPage } from "./hub.ts";

const PORTAL_PORT = 13001;
const PORTAL = `http://127.0.0.1:${PORTAL_PORT}`;

let db: Db;
let portal: Proc;
let smtp: TestSmtp | null = null;

test.beforeAll(async () => {
  const url = await hubDatabaseUrl();
  db = createDb(url, { poolConnectionsMax: 2 });
  smtp = await startTestSmtp();
  portal = startProc(TSX, [join(ROOT, "web/server.ts")], {
    cwd: join(ROOT, "web"),
    env: {
      DATABASE_URL: url,
      // The hub's session secret, so this portal is one more instance of the same hub.
      NEXTAUTH_SECRET: (await readFile(join(HUB_DATA_DIR, "portal-secret"), "utf8")).trim(),
      NEXTAUTH_URL: PORTAL,
      HOST: "127.0.0.1",
      WEB_PORT: String(PORTAL_PORT),
      SMTP_URL: smtp.url,
      MAIL_FROM: "Wellspring <accounts@hub.test>",
      TRUSTED_PROXIES: "127.0.0.1",
      NEXT_TELEMETRY_DISABLED: "1",
    },
  });
  await portal.waitForLine(/portal ready on/, 60_000);
});

test.afterAll(async () => {
  await portal?.stop();
  await smtp?.close();
  await db?.$disconnect();
});

/** A mail body as a mail client shows it (quoted-printable soft line breaks undone). */
const bodyOf = (data: string) => data.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));

test("the reset mail arrives over SMTP; its link sets a password that signs in; an older session is refused", async ({ browser }) => {
  const id = newId("usr");
  const email = `smtp-${id.slice(4, 12)}@accounts.test`;
  await db.user.create({ data: { id, email, passwordHash: await hashPassword("password before 1") } });
  const old = await (await browser.newContext({ baseURL: PORTAL })).newPage();
  await signInOnPage(old, email, "password before 1");

  const page = await (await browser.newContext({ baseURL: PORTAL })).newPage();
  await page.goto("/forgot-password");
  await page.getByLabel("Email").fill(email);
  await page.getByRole("button", { name: "Send reset link" }).click();
  await expect(page.getByTestId("reset-requested")).toBeVisible();
  await expect.poll(() => smtp!.received.filter((m) => m.to.includes(email)).length, { timeout: 15_000 }).toBe(1);
  const mail = smtp!.received.find((m) => m.to.includes(email))!;
  expect(mail.data).toMatch(/^From: Wellspring <accounts@hub\.test>$/m);
  expect(mail.data).toMatch(/^Subject: Reset your Wellspring password$/m);
  const link = new RegExp(`${PORTAL}/reset-password/[A-Za-z0-9_-]{43}`).exec(bodyOf(mail.data))?.[0];
  expect(link).toBeDefined();
  // Nothing went to the outbox: SMTP is configured.
  expect(await db.outboxMail.count({ where: { toAddress: email } })).toBe(0);

  await page.goto(link!);
  await page.getByLabel(/^New password/).fill("password after 22");
  await page.getByLabel("Repeat the new password").fill("password after 22");
  await page.getByRole("button", { name: "Set new password" }).click();
  await expect(page).toHaveURL(/\/signin\?notice=password-reset$/);
  await signInOnPage(page, email, "password after 22");

  await old.goto("/app");
  await expect(old).toHaveURL(/\/signin/);
  await old.context().close();
  await page.context().close();
});

test("behind a trusted proxy, the client address is the one the proxy forwarded", async ({ request }) => {
  const forwarded = `198.51.100.${1 + (Date.now() % 200)}`;
  const csrf = (await (await request.get(`${PORTAL}/api/auth/csrf`)).json()) as { csrfToken: string };
  const res = await request.post(`${PORTAL}/api/auth/callback/credentials`, {
    headers: { "x-forwarded-for": `6.6.6.6, ${forwarded}` },
    form: { csrfToken: csrf.csrfToken, email: `nobody-${Date.now()}@accounts.test`, password: "some password 1", json: "true" },
  });
  expect(((await res.json()) as { url: string }).url).toContain("error=invalid");
  expect((await db.throttleCounter.findUnique({ where: { key: `signin:addr:${forwarded}` } }))?.count).toBe(1);
  expect(await db.throttleCounter.count({ where: { key: { contains: "6.6.6.6" } } })).toBe(0);
});
