/**
 * A key owner, in real Chromium against the hub started as `npm start` does: sign up as an owner, create an
 * enrollment command on the Agents page, run exactly that command (the Deno launcher), start the agent and
 * see it online; after users' traffic, see the earnings (official price × tier A) and request a payout.
 */
import { HUB_API, hubDatabaseUrl, signInOnPage } from "./hub.ts";
import { expect, test } from "@playwright/test";
import pg from "pg";
import { createDb, newId, type Db } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { Treasury } from "../../gateway/src/ops/treasury.ts";
import { enrollWithToken, startAgentProc, type AgentProc } from "../stack/harness.ts";

const API = HUB_API;

let mock: MockProvider;
let agent: AgentProc | null = null;
let db: Db;
let pool: pg.Pool;

test.beforeAll(async () => {
  const url = await hubDatabaseUrl();
  db = createDb(url, { poolConnectionsMax: 2 });
  pool = new pg.Pool({ connectionString: url, max: 2 });
  mock = await startMockProvider();
});

test.afterAll(async () => {
  await agent?.stop();
  await mock?.close();
  await pool?.end();
  await db?.$disconnect();
});

test("an owner enrolls an agent with the command the page shows, sees it online, then its earnings", async ({ page }, testInfo) => {
  const shot = (name: string) => page.screenshot({ path: testInfo.outputPath(`${name}.png`), fullPage: true });
  const email = `owner-${Date.now()}@example.test`;
  await page.goto("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel(/^Password/).fill("owner password 123");
  await page.getByLabel(/offer capacity/).check();
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/signin\?notice=signed-up$/, { timeout: 15_000 }); // a fresh portal's first server action hashes a password
  await signInOnPage(page, email, "owner password 123");

  await page.getByRole("link", { name: "Agents" }).click();
  await page.getByLabel("Agent name").fill("office-agent");
  await page.getByRole("button", { name: "Create enrollment command" }).click();
  const command = (await page.getByTestId("enroll-command").textContent())!;
  await shot("agents-enroll");
  const m = /^\.\/wellspring-agent enroll --hub (\S+) --pin (\S+) --token (wse_\w+) --name office-agent$/.exec(command);
  expect(m, command).not.toBeNull();
  const [, hub, pin, token] = m!;
  expect(hub).toBe("https://127.0.0.1:18788");

  // The owner runs it where the keys are (here, through the same launcher script), then starts the agent.
  const enrolled = await enrollWithToken({ agentOrigin: hub!, pin: pin! }, token!, { name: "office-agent", models: { openai: ["gpt-4o-mini"], anthropic: ["claude-opus-4-1"] } });
  agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId(`agent-state-${enrolled.agentId}`)).toHaveText("Online", { timeout: 500 });
    // The models arrive with the agent's inventory, just after the handshake.
    await expect(page.getByTestId("agents-table")).toContainText("gpt-4o-mini", { timeout: 500 });
  }).toPass({ timeout: 15_000 });
  await shot("agents-online");

  // A user's traffic, served by this owner's agent (the only agent offering claude-opus-4-1).
  const userId = newId("usr");
  await db.user.create({ data: { id: userId, email: `${userId}@buyer.test` } });
  await new Treasury(pool).grant("test", userId, 5_000_000n, "test credit");
  const { secret } = await issueKey(db, userId, "buyer");
  let official = 0n;
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${API}/v1/messages`, { method: "POST", headers: { "x-api-key": secret, "anthropic-version": "2023-06-01", "content-type": "application/json" }, body: JSON.stringify({ model: "claude-opus-4-1", max_tokens: 100, messages: [{ role: "user", content: "Hello [mock chunks=20]" }] }) });
    expect(res.status).toBe(200);
    const u = ((await res.json()) as { usage: { input_tokens: number; output_tokens: number } }).usage;
    // claude-opus-4-1: $15 / $75 per 1M tokens.
    official += (BigInt(u.input_tokens) * 15_000_000n + BigInt(u.output_tokens) * 75_000_000n + 999_999n) / 1_000_000n;
  }
  const earned = (official * 7_000n) / 10_000n; // tier A, rounded down per request below
  // Settlements are written just after each response (batched), so the page shows all three moments later.
  let available = "";
  await expect(async () => {
    await page.goto("/app/earnings");
    await expect(page.getByTestId("earnings-by-model")).toContainText("claude-opus-4-1", { timeout: 500 });
    available = (await page.getByTestId("earnings-available").textContent())!;
    const availableMicros = BigInt(Math.round(Number(available.replace(/[$,]/g, "")) * 1e6));
    expect(availableMicros - earned).toBeLessThanOrEqual(0n); // per-request rounding down can only lower it…
    expect(earned - availableMicros).toBeLessThanOrEqual(3n); // …by under 1 µUSD per request
  }).toPass({ timeout: 10_000 });
  await shot("earnings");

  await page.getByLabel("Amount ($)").fill("1000");
  await page.getByRole("button", { name: "Request payout" }).click();
  await expect(page.getByText("That is more than your unrequested earnings.")).toBeVisible();
  await page.getByLabel("Amount ($)").fill(available.replace(/[$,]/g, ""));
  await page.getByRole("button", { name: "Request payout" }).click();
  await expect(page.getByText(/Payout of .* requested\./)).toBeVisible();
  await expect(page.getByTestId("payouts-pending")).toHaveText(available);
  await expect(page.getByTestId("payouts-table")).toContainText("pending");
  await shot("earnings-payout");

  // Pausing takes the agent out of routing at once: the model has no capacity.
  await page.getByRole("link", { name: "Agents" }).click();
  await page.getByRole("button", { name: "Pause" }).click();
  await expect(page.getByRole("button", { name: "Resume" })).toBeVisible();
  await expect(async () => {
    const res = await fetch(`${API}/v1/messages`, { method: "POST", headers: { "x-api-key": secret, "anthropic-version": "2023-06-01", "content-type": "application/json" }, body: JSON.stringify({ model: "claude-opus-4-1", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }) });
    expect(res.status).toBe(503);
  }).toPass({ timeout: 5_000 });
  await page.getByRole("button", { name: "Join discount lane" }).click();
  await expect(page.getByTestId("agents-table")).toContainText("discount lane");
  await shot("agents-paused");
});
