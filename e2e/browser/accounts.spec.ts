/**
 * Sign-in, sessions and password reset in real Chromium against the hub `npm start` runs (no SMTP server
 * configured, so mail goes to the outbox admins read in the portal): wrong passwords slow the next try but
 * never lock the owner out; a forged X-Forwarded-For is not believed; "sign out everywhere" and a password
 * change end other browsers' sessions; a forgotten password is reset through the emailed link.
 */
import { expect, test, type Browser, type Page } from "@playwright/test";
import { createDb, hashPassword, newId, type Db } from "@wellspring/db";
import { hubDatabaseUrl, signInOnPage } from "./hub.ts";

let db: Db;
const admin = { email: `admin-${Date.now()}@accounts.test`, password: "admin password 321" };

test.beforeAll(async () => {
  db = createDb(await hubDatabaseUrl(), { poolConnectionsMax: 2 });
  await db.user.create({ data: { id: newId("usr"), email: admin.email, isAdmin: true, passwordHash: await hashPassword(admin.password) } });
});

test.afterAll(async () => {
  await db?.$disconnect();
});

/** An account to sign in to (its making is not what these tests are about). */
async function account(name: string, password: string): Promise<{ id: string; email: string; password: string }> {
  const id = newId("usr");
  const email = `${name}-${id.slice(4, 12)}@accounts.test`;
  await db.user.create({ data: { id, email, passwordHash: await hashPassword(password) } });
  return { id, email, password };
}

async function newPage(browser: Browser, extraHTTPHeaders?: Record<string, string>): Promise<Page> {
  return (await browser.newContext({ extraHTTPHeaders })).newPage();
}

/** Submits the sign-in form once (waiting until it may be submitted) and returns what the form then says. */
async function trySignIn(page: Page, email: string, password: string): Promise<string> {
  const button = page.getByRole("button", { name: /Sign in|Wait/ });
  await expect(button).toBeEnabled({ timeout: 20_000 }); // a throttled form counts down, then lets the user try
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  const answered = page.waitForResponse((r) => r.url().includes("/api/auth/callback/credentials"));
  await button.click();
  await answered;
  const said = page.locator("#signin-error");
  await expect(said.or(page.getByTestId("signed-in-as"))).toBeVisible();
  return page.url().endsWith("/app") ? "signed in" : (await said.textContent())!;
}

const addressCount = async (key: string) => (await db.throttleCounter.findUnique({ where: { key } }))?.count ?? 0;

test("five wrong passwords, then the right one signs in after the stated wait at most", async ({ page }) => {
  const owner = await account("owner", "the right password 1");
  await page.goto("/signin");
  const answers: string[] = [];
  while (answers.filter((a) => a === "Wrong email or password.").length < 5) answers.push(await trySignIn(page, owner.email, "a wrong password"));
  // Each wait the form stated was for this account only and short; none was a lockout.
  for (const a of answers) expect(a).toMatch(/^(Wrong email or password\.|Too many failed sign-ins for this account\. Try again in [1-4] seconds?\.)$/);
  const last = await trySignIn(page, owner.email, owner.password);
  if (last !== "signed in") {
    const seconds = Number(/Try again in (\d+) seconds?\./.exec(last)?.[1]);
    expect(seconds).toBeLessThanOrEqual(4);
    expect(await trySignIn(page, owner.email, owner.password)).toBe("signed in");
  }
  await expect(page.getByTestId("signed-in-as")).toHaveText(owner.email);
});

test("a forged X-Forwarded-For does not move which address is counted", async ({ browser }) => {
  const forged = "203.0.113.66";
  const page = await newPage(browser, { "x-forwarded-for": forged, "x-wellspring-client-address": forged });
  const before = await addressCount("signin:addr:127.0.0.1");
  await page.goto("/signin");
  for (let i = 0; i < 3; i++) expect(await trySignIn(page, `nobody-${i}-${Date.now()}@accounts.test`, "some password 1")).toBe("Wrong email or password.");
  expect(await addressCount("signin:addr:127.0.0.1")).toBe(before + 3);
  expect(await db.throttleCounter.count({ where: { key: { contains: forged } } })).toBe(0);
  await page.context().close();
});

test("sign out everywhere ends the session in another browser", async ({ browser }) => {
  const user = await account("everywhere", "everywhere password 1");
  const laptop = await newPage(browser);
  const phone = await newPage(browser);
  await signInOnPage(laptop, user.email, user.password);
  await signInOnPage(phone, user.email, user.password);
  await laptop.getByRole("link", { name: "Account" }).click();
  await laptop.getByRole("button", { name: "Sign out everywhere" }).click();
  await expect(laptop).toHaveURL(/\/signin\?notice=signed-out-everywhere$/);
  await expect(laptop.getByTestId("signin-notice")).toContainText("Every session of your account is signed out");
  await phone.goto("/app/keys");
  await expect(phone).toHaveURL(/\/signin/);
  // Signing in again works.
  await signInOnPage(phone, user.email, user.password);
  await laptop.context().close();
  await phone.context().close();
});

test("a password change ends the other browsers' sessions", async ({ browser }) => {
  const user = await account("changer", "first password 123");
  const laptop = await newPage(browser);
  const phone = await newPage(browser);
  await signInOnPage(laptop, user.email, user.password);
  await signInOnPage(phone, user.email, user.password);
  await laptop.goto("/app/account");
  await laptop.getByLabel("Current password").fill(user.password);
  await laptop.getByLabel(/^New password/).fill("second password 456");
  await laptop.getByLabel("Repeat the new password").fill("second password 456");
  await laptop.getByRole("button", { name: "Change password" }).click();
  await expect(laptop).toHaveURL(/\/signin\?notice=password-changed$/);
  await phone.goto("/app");
  await expect(phone).toHaveURL(/\/signin/);
  await signInOnPage(phone, user.email, "second password 456");
  await laptop.context().close();
  await phone.context().close();
});

test("forgot password: the same answer for any address, a link in the outbox, a new password, old sessions ended", async ({ browser }, testInfo) => {
  const user = await account("forgetful", "forgotten password 1");
  const old = await newPage(browser);
  await signInOnPage(old, user.email, user.password);

  const page = await newPage(browser);
  await page.goto("/signin");
  await page.getByRole("link", { name: "Forgot password?" }).click();
  await expect(page).toHaveURL(/\/forgot-password$/);
  await page.getByLabel("Email").fill(user.email);
  await page.getByRole("button", { name: "Send reset link" }).click();
  const answer = (await page.getByTestId("reset-requested").textContent())!;
  await page.screenshot({ path: testInfo.outputPath("forgot-password.png"), fullPage: true });
  await page.goto("/forgot-password");
  await page.getByLabel("Email").fill(`nobody-${Date.now()}@accounts.test`);
  await page.getByRole("button", { name: "Send reset link" }).click();
  await expect(page.getByTestId("reset-requested")).toHaveText(answer);

  // No SMTP server on this hub: the admin reads the mail on the Outbox page.
  const adminPage = await newPage(browser);
  await signInOnPage(adminPage, admin.email, admin.password);
  await adminPage.getByRole("link", { name: "Outbox" }).click();
  const mail = adminPage.getByTestId("mail-password_reset").filter({ hasText: user.email });
  await expect(mail).toHaveCount(1);
  await adminPage.screenshot({ path: testInfo.outputPath("admin-outbox.png"), fullPage: true });
  const link = /(http:\/\/\S+\/reset-password\/[A-Za-z0-9_-]{43})/.exec((await mail.locator("pre").textContent())!)![1]!;

  await page.goto(link);
  await page.getByLabel(/^New password/).fill("short");
  await page.getByLabel("Repeat the new password").fill("short");
  await page.getByRole("button", { name: "Set new password" }).click();
  await expect(page.getByText("Use at least 10 characters.")).toBeVisible();
  await page.getByLabel(/^New password/).fill("remembered password 2");
  await page.getByLabel("Repeat the new password").fill("remembered password 2");
  await page.getByRole("button", { name: "Set new password" }).click();
  await expect(page).toHaveURL(/\/signin\?notice=password-reset$/);
  await signInOnPage(page, user.email, "remembered password 2");

  // The session signed in with the old password is over, and the link works only once.
  await old.goto("/app");
  await expect(old).toHaveURL(/\/signin/);
  await old.goto(link);
  await expect(old.getByText("This link has expired or was already used.")).toBeVisible();
  for (const p of [old, page, adminPage]) await p.context().close();
});

test("an admin sees a user's sign-in slow-down, unlocks it, and sends a reset link", async ({ browser }) => {
  const user = await account("locked", "locked password 1");
  const page = await newPage(browser);
  await page.goto("/signin");
  let answer = "";
  for (let wrong = 0; wrong < 4;) {
    answer = await trySignIn(page, user.email, "a wrong password");
    if (answer === "Wrong email or password.") wrong++;
  }
  const adminPage = await newPage(browser);
  await signInOnPage(adminPage, admin.email, admin.password);
  await adminPage.goto(`/app/admin/accounts?q=${encodeURIComponent(user.email)}`);
  const row = adminPage.getByTestId(`user-${user.email}`);
  await expect(row.getByTestId("signin-throttle")).toContainText("4 failed sign-ins from 1 address");
  await row.getByRole("button", { name: `Unlock sign-in of ${user.email}` }).click();
  await expect(adminPage.getByTestId(`user-${user.email}`).getByTestId("signin-throttle")).toHaveCount(0);
  // The next try goes at once: no wait, the password is checked.
  await page.reload();
  expect(await trySignIn(page, user.email, user.password)).toBe("signed in");

  await adminPage
    .getByTestId(`user-${user.email}`)
    .getByRole("button", { name: `Send a password reset link to ${user.email}` })
    .click();
  await expect(adminPage.getByTestId("accounts-notice")).toContainText("A password reset link was sent");
  await adminPage.getByRole("link", { name: "Outbox" }).click();
  await expect(adminPage.getByTestId("mail-password_reset").filter({ hasText: user.email })).toHaveCount(1);
  const trail = await db.auditEvent.findMany({ where: { subject: `user:${user.id}` }, orderBy: { id: "asc" } });
  expect(trail.map((e) => e.action)).toEqual(["account.signin_unlocked", "account.password_reset_sent"]);
  await page.context().close();
  await adminPage.context().close();
});
