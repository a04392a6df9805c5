/**
 * An administrator, in real Chromium against the hub started as `npm start` does: made with the documented
 * command, publishes a new price version (edit the draft, see the difference, publish) that a user's price
 * page then shows, and resolves a risk flag with a note — suspending the flagged user, audited.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { hubDatabaseUrl, signInOnPage } from "./hub.ts";
import { expect, test, type Browser, type Page } from "@playwright/test";
import { createDb, newId, type Db } from "@wellspring/db";
import { ROOT, TSX } from "../stack/harness.ts";

let db: Db;
let url: string;

test.beforeAll(async () => {
  url = await hubDatabaseUrl();
  db = createDb(url, { poolConnectionsMax: 2 });
});

test.afterAll(async () => {
  await db?.$disconnect();
});

async function signIn(browser: Browser, email: string, password: string): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  await page.goto("/signin");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/app$/);
  return page;
}

test("an admin publishes a price version the user's price page shows, and resolves a risk flag", async ({ browser }, testInfo) => {
  const adminEmail = `admin-${Date.now()}@example.test`;
  const adminPassword = "admin password 456";
  // The first administrator, made with the documented command.
  const scratch = await mkdtemp(join(tmpdir(), "ws-admin-cli-"));
  const made = await promisify(execFile)(TSX, ["gateway/src/cli/admin.ts", "create-admin", "--email", adminEmail], { cwd: ROOT, env: { ...process.env, DATABASE_URL: url, DATA_DIR: scratch, WELLSPRING_ADMIN_PASSWORD: adminPassword } });
  await rm(scratch, { recursive: true, force: true });
  expect(made.stdout).toContain(`administrator usr_`);

  // A user, signed up in the portal.
  const userEmail = `buyer-${Date.now()}@example.test`;
  const user = await (await browser.newContext()).newPage();
  await user.goto("/signup");
  await user.getByLabel("Email").fill(userEmail);
  await user.getByLabel(/^Password/).fill("buyer password 789");
  await user.getByRole("button", { name: "Create account" }).click();
  await expect(user).toHaveURL(/\/signin\?notice=signed-up$/, { timeout: 15_000 }); // a fresh portal's first server action hashes a password
  await signInOnPage(user, userEmail, "buyer password 789");
  await user.getByRole("link", { name: "Prices" }).click();
  const before = Number(/official version (\d+)/.exec((await user.getByText(/official version \d+/).textContent())!)![1]);
  await expect(user.getByTestId("price-o4-mini")).toContainText("$4.40");

  // The admin edits the draft: o4-mini output from $4.40 to $4.80 per 1M tokens.
  const admin = await signIn(browser, adminEmail, adminPassword);
  await admin.getByRole("link", { name: "Price tables" }).click();
  const draft = admin.getByLabel("Prices");
  const text = await draft.inputValue();
  expect(text).toContain("openai o4-mini 1.10 4.40 0.275");
  await draft.fill(text.replace("openai o4-mini 1.10 4.40 0.275", "openai o4-mini 1.10 4.80 0.275"));
  await admin.getByRole("button", { name: "Show difference" }).click();
  await expect(admin.getByTestId("price-diff")).toContainText("openai:o4-mini");
  await expect(admin.getByTestId("price-diff")).toContainText("1100000 / 4800000 / 275000");
  await expect(admin.getByTestId("price-diff").locator("tbody tr")).toHaveCount(1);
  await admin.screenshot({ path: testInfo.outputPath("admin-prices-diff.png"), fullPage: true });
  await admin.getByLabel(/^Note/).fill("o4-mini output repriced");
  await admin.getByRole("button", { name: "Publish new version" }).click();
  await expect(admin.getByText(`Published version ${before + 1}.`)).toBeVisible();

  await user.reload();
  await expect(user.getByText(`official version ${before + 1}`)).toBeVisible();
  await expect(user.getByTestId("price-o4-mini")).toContainText("$4.80");
  await expect(user.getByTestId("price-history")).toContainText("o4-mini output repriced");
  await user.screenshot({ path: testInfo.outputPath("user-prices.png"), fullPage: true });

  // A detector flagged the user; the admin reviews it.
  const buyer = await db.user.findUniqueOrThrow({ where: { email: userEmail } });
  const flagId = newId("flg");
  await db.riskFlag.create({ data: { id: flagId, kind: "self_dealing", subject: `user:${buyer.id}`, severity: 3, evidence: { sharedEgressIp: "203.0.113.7", ownerAccounts: 1, requests: 412 } } });
  await admin.getByRole("link", { name: "Risk review" }).click();
  const flag = admin.getByTestId(`flag-${flagId}`);
  await expect(flag).toContainText("self dealing");
  await expect(flag).toContainText("203.0.113.7");
  await flag.getByRole("button", { name: "Suspend" }).click();
  await expect(flag.getByText("Write a note: it goes into the audit trail.")).toBeVisible();
  await flag.getByLabel("Note").fill("Same egress IP as the owner account; buying from own agent.");
  await flag.getByRole("button", { name: "Suspend" }).click();
  await expect(admin.getByTestId("decided-flags")).toContainText("Same egress IP as the owner account");
  await expect(admin.getByTestId("open-flags")).toHaveCount(0);
  await admin.screenshot({ path: testInfo.outputPath("admin-risk.png"), fullPage: true });

  expect((await db.user.findUniqueOrThrow({ where: { id: buyer.id } })).status).toBe("suspended");
  const trail = await db.auditEvent.findMany({ where: { subject: `flag:${flagId}` } });
  expect(trail.map((e) => e.action)).toEqual(["risk.suspended"]);
  // The suspended user's next page load finds no session.
  await user.goto("/app");
  await expect(user).toHaveURL(/\/signin/);

  // Users & agents: find the user, reactivate them.
  await admin.getByRole("link", { name: "Users & agents" }).click();
  await admin.getByLabel("Search").fill(userEmail);
  await admin.getByRole("button", { name: "Search" }).click();
  const row = admin.getByTestId(`user-${userEmail}`);
  await expect(row).toContainText("suspended");
  await row.getByRole("button", { name: "Reactivate" }).click();
  await expect(admin.getByTestId(`user-${userEmail}`)).toContainText("active");
  await admin.screenshot({ path: testInfo.outputPath("admin-accounts.png"), fullPage: true });
  expect((await db.user.findUniqueOrThrow({ where: { id: buyer.id } })).status).toBe("active");

  // Redemption codes: a batch, shown once.
  await admin.getByRole("link", { name: "Codes" }).click();
  await admin.getByLabel("Value per code ($)").fill("2");
  await admin.getByLabel("Codes", { exact: true }).fill("3");
  await admin.getByLabel("Note").fill("launch week");
  await admin.getByRole("button", { name: "Create codes" }).click();
  const codes = (await admin.getByTestId("new-codes").inputValue()).split("\n");
  expect(codes).toHaveLength(3);
  for (const c of codes) expect(c).toMatch(/^WSR(-[A-Z2-9]{4}){4}$/);
  await expect(admin.getByTestId("batches")).toContainText("0 / 3");
  await expect(admin.getByTestId("batches")).toContainText("launch week");
  await admin.screenshot({ path: testInfo.outputPath("admin-codes.png"), fullPage: true });

  // System: the gateway, the agents' price versions, and the ledger audit.
  await admin.getByRole("link", { name: "System" }).click();
  await expect(admin.getByTestId("system-gateway")).toHaveText("Online");
  await expect(admin.getByTestId("ledger-audit")).toContainText("All invariants hold");
  await admin.screenshot({ path: testInfo.outputPath("admin-system.png"), fullPage: true });
});
