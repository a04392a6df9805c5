/**
 * The first hour of the three roles, in real Chromium against the hub started as `npm start` does (fresh data
 * folder, no administrator). First the administrator is made on the first-run page with the single-use link the
 * hub wrote beside its log (DATA_DIR/admin-setup-url); this file runs before every other (playwright.config.ts,
 * project "first-run"), so the hub has no administrator yet. Then every page a user, a key owner and an admin
 * sees, at 1280 px and at 390 px (a phone), with data in its tables: each must load without a server error,
 * scroll no wider than the screen, keep the text of neighbouring table columns apart, have a title, and log no
 * console error. A screenshot of every page at both widths is kept (test-results/browser/…).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, test, type Browser, type Page, type TestInfo } from "@playwright/test";
import { HUB_API, HUB_DATA_DIR, signUpOnPage } from "./hub.ts";

test.describe.configure({ mode: "serial" });

const WIDTHS = [1280, 390] as const;
/** The least gap between the text of two neighbouring table cells, CSS px. */
const COLUMN_GAP_PX_MIN = 8;

const admin = { email: `first-admin-${Date.now()}@example.test`, password: "first admin password" };

test("the first administrator is made on the first-run page with the link the hub printed, once", async ({ page }) => {
  const setupUrl = (await readFile(join(HUB_DATA_DIR, "admin-setup-url"), "utf8")).trim();
  expect(setupUrl).toMatch(/^http:\/\/127\.0\.0\.1:13000\/setup\?token=wss_[0-9a-z]{40}$/);

  // Without the token the page refuses.
  await page.goto("/setup");
  await page.getByLabel("Your email").fill(admin.email);
  await page.getByLabel(/^Password/).fill(admin.password);
  await page.getByLabel("Repeat the password").fill(admin.password);
  await page.getByRole("button", { name: "Create administrator" }).click();
  await expect(page.getByText("Paste the setup link's token")).toBeVisible();
  await page.getByLabel(/^Setup token/).fill("wss_" + "x".repeat(40));
  await page.getByRole("button", { name: "Create administrator" }).click();
  await expect(page.getByText("This setup token is not valid")).toBeVisible();

  // With the printed link.
  await page.goto(setupUrl);
  await expect(page.getByLabel(/^Setup token/)).toHaveValue(new URL(setupUrl).searchParams.get("token")!);
  await page.getByLabel("Your email").fill(admin.email);
  await page.getByLabel(/^Password/).fill(admin.password);
  await page.getByLabel("Repeat the password").fill(admin.password);
  await page.getByRole("button", { name: "Create administrator" }).click();
  await expect(page).toHaveURL(/\/signin\?notice=admin-created$/, { timeout: 15_000 });
  await signIn(page, admin.email, admin.password);
  await expect(page.getByRole("link", { name: "Risk review" })).toBeVisible();

  // Setup is closed for good: the same link makes nobody else an administrator.
  await page.goto(setupUrl);
  await expect(page.getByTestId("setup-closed")).toBeVisible();
});

async function signIn(page: Page, email: string, password: string): Promise<void> {
  if (!/\/signin(\?|$)/.test(page.url())) await page.goto("/signin");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/app$/, { timeout: 20_000 });
}

/** A browser context of its own per role, collecting console errors and failed page loads. */
async function rolePage(browser: Browser, errors: string[]): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console error on ${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`uncaught error on ${page.url()}: ${e.message}`));
  return page;
}

/** What is wrong with the page as laid out now (empty when nothing is). */
async function layoutProblems(page: Page): Promise<string[]> {
  return page.evaluate((gapMin) => {
    const problems: string[] = [];
    const root = document.documentElement;
    if (root.scrollWidth > root.clientWidth) problems.push(`the page scrolls sideways: ${root.scrollWidth} px wide on a ${root.clientWidth} px screen`);
    for (const row of document.querySelectorAll("tr")) {
      const cells = [...row.children].filter((c) => (c.textContent ?? "").trim() !== "" && (c as HTMLElement).offsetParent !== null);
      const extents = cells.map((c) => {
        const range = document.createRange();
        range.selectNodeContents(c);
        const r = range.getBoundingClientRect();
        return { left: r.left, right: r.right, text: (c.textContent ?? "").trim().slice(0, 40) };
      });
      for (let i = 0; i + 1 < extents.length; i++) {
        const [a, b] = [extents[i]!, extents[i + 1]!];
        if (b.left - a.right < gapMin) problems.push(`columns touch (${Math.round(b.left - a.right)} px): “${a.text}” | “${b.text}”`);
      }
    }
    return problems;
  }, COLUMN_GAP_PX_MIN);
}

/** Visits `path`, checks it as described above and keeps a screenshot. */
async function inspect(page: Page, testInfo: TestInfo, role: string, width: number, path: string): Promise<void> {
  const res = await page.goto(path);
  const where = `${role} ${path} at ${width} px`;
  expect(res?.status() ?? 0, `${where}: HTTP status`).toBeLessThan(500);
  await expect(page.locator("body"), `${where}: error page`).not.toContainText(
    /Application error|Internal Server Error|This page couldn.t load|Unhandled Runtime Error/,
  );
  await expect(page, `${where}: title`).toHaveTitle(/Wellspring/);
  // Laid out with its own font (a fallback font has other widths), after the page's scripts ran.
  await page.evaluate(() => document.fonts.ready);
  expect(await layoutProblems(page), where).toEqual([]);
  const name = path.replace(/^\//, "").replace(/[/?=&]+/g, "-") || "home";
  await page.screenshot({ path: testInfo.outputPath(`${width}px`, `${role}-${name}.png`), fullPage: true });
}

test("every page of a user, a key owner and an admin, at 1280 and 390 px", async ({ browser }, testInfo) => {
  test.setTimeout(240_000);
  const errors: string[] = [];
  const stamp = Date.now();

  // A user with keys (one with a long name), requests in the usage log (refused: no agent yet) and a bad date filter.
  const user = await rolePage(browser, errors);
  await signUpOnPage(user, `layout-user-${stamp}@example.test`, "layout user password", false);
  await user.goto("/app/keys");
  for (const name of ["laptop", "a-very-long-key-name-for-the-continuous-integration-pipeline"]) {
    await user.getByLabel("Name", { exact: true }).fill(name);
    await user.getByRole("button", { name: "Create key" }).click();
    await expect(user.getByTestId("new-key-panel")).toContainText(name);
    await expect(user.getByLabel("Name", { exact: true })).toHaveValue(""); // the form clears for the next key
  }
  const secret = (await user.getByTestId("new-key-secret").textContent())!;
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${HUB_API}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
    });
    expect(res.status).toBe(503); // no agent serves it yet: "not available right now"
  }
  // Revoking asks first; the secret of the key just revoked is no longer shown.
  await expect(user.getByTestId("new-key-secret")).toHaveText(secret);
  await user.getByRole("button", { name: "Revoke a-very-long-key-name" }).click();
  await user.getByRole("button", { name: "Yes, revoke" }).click();
  await expect(user.getByTestId("keys-table")).toContainText("revoked");
  await expect(user.getByTestId("new-key-panel")).toHaveCount(0);
  // Unknown allowed models are refused by name.
  await user.getByLabel("Name", { exact: true }).fill("restricted");
  await user.getByLabel(/^Allowed models/).fill("gpt-4o-mini, gpt-imaginary");
  await user.getByRole("button", { name: "Create key" }).click();
  await expect(user.getByText("No model is called “gpt-imaginary”")).toBeVisible();
  const badDate = "/app/usage?from=2026-13-45";

  // A key owner with an enrollment in progress.
  const owner = await rolePage(browser, errors);
  await signUpOnPage(owner, `layout-owner-${stamp}@example.test`, "layout owner password", true);
  await owner.goto("/app/agents");
  await expect(owner.getByTestId("agents-empty")).toBeVisible();

  // The admin from the first-run page, with a batch of codes.
  const adminPage = await rolePage(browser, errors);
  await signIn(adminPage, admin.email, admin.password);
  await adminPage.goto("/app/admin/codes");
  await adminPage.getByLabel("Value per code ($)").fill("2.5");
  await adminPage.getByLabel("Codes", { exact: true }).fill("2");
  await adminPage.getByRole("button", { name: "Create codes" }).click();
  await expect(adminPage.getByTestId("new-codes")).toBeVisible();

  const userPages = ["/app", "/app/keys", "/app/usage", badDate, "/app/billing", "/app/prices", "/app/account"];
  const ownerPages = ["/app/agents", "/app/earnings"];
  const adminPages = [
    "/app/admin/system",
    `/app/admin/accounts?q=layout-`,
    "/app/admin/prices",
    "/app/admin/risk",
    "/app/admin/payouts",
    "/app/admin/codes",
    "/app/admin/outbox",
  ];
  const publicPages = ["/", "/signin", "/signup", "/forgot-password", "/setup"];
  const visitor = await rolePage(browser, errors);

  for (const width of WIDTHS) {
    for (const page of [user, owner, adminPage, visitor]) await page.setViewportSize({ width, height: 900 });
    for (const path of userPages) await inspect(user, testInfo, "user", width, path);
    for (const path of ownerPages) await inspect(owner, testInfo, "owner", width, path);
    for (const path of adminPages) await inspect(adminPage, testInfo, "admin", width, path);
    for (const path of publicPages) await inspect(visitor, testInfo, "visitor", width, path);
    // The owner's three commands, printed with copy buttons, fit the phone too.
    await owner.goto("/app/agents");
    await owner.getByLabel("Agent name").fill(`layout-${width}`);
    await owner.getByRole("button", { name: "Create enrollment command" }).click();
    await expect(owner.getByTestId("start-command")).toContainText("./wellspring-agent start");
    await expect(owner.getByRole("button", { name: "Copy" })).toHaveCount(3);
    expect(await layoutProblems(owner), `owner enrollment steps at ${width} px`).toEqual([]);
    await owner.screenshot({ path: testInfo.outputPath(`${width}px`, "owner-enroll-steps.png"), fullPage: true });
  }

  // What the pages said along the way.
  await user.goto(badDate);
  await expect(user.getByTestId("usage-bad-date")).toContainText("“2026-13-45” is not a date");
  await expect(user.getByTestId("usage-table")).toContainText("503");
  expect(errors).toEqual([]);
});
