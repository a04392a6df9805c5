/** The hub Playwright's web server started (`npm start` in `.data/playwright`, zero configuration). */
import { readFile } from "node:fs/promises";
import { expect, type Page } from "@playwright/test";
import { join } from "node:path";
import { ROOT } from "../stack/harness.ts";

export const HUB_DATA_DIR = join(ROOT, ".data/playwright");
export const HUB_API = "http://127.0.0.1:18787";
export const HUB_AGENT_ORIGIN = "https://127.0.0.1:18788";

/** The URL of the hub's embedded PostgreSQL: its port is line 4 of postmaster.pid. */
export async function hubDatabaseUrl(): Promise<string> {
  const port = (await readFile(join(HUB_DATA_DIR, "postgres", "postmaster.pid"), "utf8")).split("\n")[3]!.trim();
  return `postgresql://postgres:postgres@127.0.0.1:${port}/wellspring`;
}

/**
 * Signs in through the sign-in page as a person would (sign-up leads there too: it answers the same for a new
 * and a taken address, so it never signs in by itself).
 */
export async function signInOnPage(page: Page, email: string, password: string): Promise<void> {
  if (!/\/signin(\?|$)/.test(page.url())) await page.goto("/signin");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  // A portal process that has not yet served /app loads its server code on the first visit: allow for that.
  await expect(page).toHaveURL(/\/app$/, { timeout: 20_000 });
}

/** Signs up through the sign-up page (ticking "offer capacity" for a key owner), then signs in. */
export async function signUpOnPage(page: Page, email: string, password: string, owner: boolean): Promise<void> {
  await page.goto("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel(/^Password/).fill(password);
  if (owner) await page.getByLabel(/offer capacity/).check();
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/signin\?notice=signed-up$/, { timeout: 15_000 });
  await signInOnPage(page, email, password);
}
