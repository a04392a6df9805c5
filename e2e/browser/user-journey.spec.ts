/**
 * An end user's first hour, in real Chromium against the hub started as the README says (`npm start`, zero
 * configuration: embedded PostgreSQL), with a real Deno agent enrolled and the mock provider upstream:
 * sign up → create a key → top up with a redemption code → call the API with the key → the request and its
 * charge appear on the dashboard and in the usage log. Screenshots of every page are kept as artifacts.
 */
import { join } from "node:path";
import { HUB_AGENT_ORIGIN, HUB_API, HUB_DATA_DIR, hubDatabaseUrl, signInOnPage } from "./hub.ts";
import { expect, test } from "@playwright/test";
import pg from "pg";
import { createDb, currentPriceTable, newId, type Db } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { Treasury } from "../../gateway/src/ops/treasury.ts";
import { ensureTlsIdentity } from "../../gateway/src/tls.ts";
import { enrollAgent, startAgentProc, type AgentProc } from "../stack/harness.ts";

const API = HUB_API;
const AGENT_ORIGIN = HUB_AGENT_ORIGIN;

let mock: MockProvider;
let agent: AgentProc;
let db: Db;
let pool: pg.Pool;

test.beforeAll(async () => {
  const url = await hubDatabaseUrl();
  db = createDb(url, { poolConnectionsMax: 2 });
  pool = new pg.Pool({ connectionString: url, max: 2 });
  mock = await startMockProvider();
  const ownerId = newId("usr");
  await db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  const { pin } = await ensureTlsIdentity({ dir: join(HUB_DATA_DIR, "tls") });
  const enrolled = await enrollAgent(db, { agentOrigin: AGENT_ORIGIN, pin }, ownerId);
  agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
});

test.afterAll(async () => {
  await agent?.stop();
  await mock?.close();
  await pool?.end();
  await db?.$disconnect();
});

test("sign up, create a key, top up, call the API, and see the request and its charge", async ({ page }, testInfo) => {
  const shot = (name: string) => page.screenshot({ path: testInfo.outputPath(`${name}.png`), fullPage: true });
  const email = `user-${Date.now()}@example.test`;
  const password = "correct horse battery";

  // Sign up: inline validation first, then the account.
  await page.goto("/signup");
  await page.getByLabel("Email").fill("not-an-email");
  await page.getByLabel(/^Password/).fill("short");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByText("Enter an email address like name@company.com.")).toBeVisible();
  await expect(page.getByText("Use at least 10 characters.")).toBeVisible();
  await shot("signup-errors");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel(/^Password/).fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  // The same answer whether the address was new or taken: sign in with what was chosen.
  await expect(page).toHaveURL(/\/signin\?notice=signed-up$/, { timeout: 15_000 }); // a fresh portal's first server action hashes a password
  await expect(page.getByTestId("signin-notice")).toContainText("sign in with the email and password you chose");
  await signInOnPage(page, email, password);
  await expect(page.getByTestId("signed-in-as")).toHaveText(email);
  await expect(page.getByTestId("balance")).toHaveText("$0.00");
  await shot("dashboard-empty");

  // A key, shown once.
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByLabel("Name").fill("laptop");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByTestId("new-key-secret").textContent())!;
  expect(secret).toMatch(/^sk-ws-[0-9a-z]{40}$/);
  await expect(page.getByTestId("keys-table")).toContainText("laptop");
  await shot("keys");

  // Without credit the API refuses before any upstream call, in OpenAI's error shape.
  const call = () =>
    fetch(`${API}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", max_tokens: 50, messages: [{ role: "user", content: "Hello [mock chunks=9]" }] }),
    });
  const refused = await call();
  expect(refused.status).toBe(429);
  expect(((await refused.json()) as { error: { type: string } }).error.type).toBe("insufficient_quota");

  // Top up with a code an admin made.
  const { codes } = await new Treasury(pool).createRedemptionBatch("test", { amountMicros: 5_000_000n, count: 1 });
  await page.getByRole("link", { name: "Billing" }).click();
  await page.getByLabel("Code").fill(codes[0]!);
  await page.getByRole("button", { name: "Redeem" }).click();
  await expect(page.getByText("$5.00 added to your balance.")).toBeVisible();
  await expect(page.getByTestId("billing-balance")).toHaveText("$5.00");
  await expect(page.getByTestId("billing-pending-empty")).toContainText("No background responses or batches are running");
  await page.getByLabel("Code").fill(codes[0]!);
  await page.getByRole("button", { name: "Redeem" }).click();
  await expect(page.getByText("This code was already redeemed.")).toBeVisible();
  await shot("billing");

  // The call goes through the real agent to the mock provider.
  const ok = await call();
  expect(ok.status).toBe(200);
  const body = (await ok.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
  const requestId = ok.headers.get("x-wellspring-request-id")!;
  // The current official price of gpt-4o-mini (standard plan: the official price), rounded up to the µUSD.
  const price = (await currentPriceTable(db))!.prices.find((p) => p.model === "gpt-4o-mini")!;
  const chargeMicros =
    (BigInt(body.usage.prompt_tokens) * price.inputMicrosPerMTok + BigInt(body.usage.completion_tokens) * price.outputMicrosPerMTok + 999_999n) / 1_000_000n;
  const shown = `$0.${chargeMicros.toString().padStart(6, "0").replace(/0+$/, "").padEnd(2, "0")}`;

  // Records are written in batches (≤ 200 ms): reload until the newest row is this call, with its charge.
  await expect(async () => {
    await page.goto("/app/usage");
    await expect(page.getByTestId("usage-charge").first()).toHaveText(shown, { timeout: 500 });
  }).toPass({ timeout: 10_000 });
  // The refused call is there too, charged nothing.
  await expect(page.getByTestId("usage-table")).toContainText("429");
  await expect(page.getByTestId("usage-charge").nth(1)).toHaveText("—");
  await shot("usage");
  await page.getByRole("link", { name: "Dashboard" }).click();
  await expect(page.getByTestId("spend-30d")).toHaveText(shown);
  await expect(page.getByTestId("balance")).toHaveText(`$4.${(1_000_000n - chargeMicros).toString().padStart(6, "0").replace(/0+$/, "").padEnd(2, "0")}`);
  await expect(page.getByTestId("spend-by-model")).toContainText("gpt-4o-mini");
  await shot("dashboard");

  // The CSV export has the same request.
  const csv = await page.request.get("/app/usage/export");
  expect(csv.headers()["content-type"]).toContain("text/csv");
  expect(await csv.text()).toContain(requestId);

  // Sign out, and back in.
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/signin/);
  await page.goto("/app");
  await expect(page).toHaveURL(/\/signin/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("wrong password!!");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByText("Wrong email or password.")).toBeVisible();
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/app$/);
});
