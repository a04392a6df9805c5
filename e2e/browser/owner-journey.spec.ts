/**
 * A key owner, in real Chromium against the hub started as `npm start` does: sign up as an owner, create an
 * enrollment on the Agents page, run the three commands it prints exactly as printed in a clean folder holding
 * only the agent's files (enroll, write the configuration, start), and see the agent online with the printed
 * models; after users' traffic, see the earnings (official price × tier A) and request a payout in whole cents,
 * the receipt chain's two tails and today's earnings by both sides, and "ledger out of sync" once the agent's
 * ledger is lost.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { HUB_API, hubDatabaseUrl, signInOnPage } from "./hub.ts";
import { expect, test } from "@playwright/test";
import pg from "pg";
import { createDb, newId, type Db } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { Treasury } from "../../gateway/src/ops/treasury.ts";
import { startAgentProc, startProc, type AgentProc, type Proc } from "../stack/harness.ts";
import { ownerEnv, ownerFolder, readImage } from "../stack/owner_folder.ts";

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

const cleanups: (() => Promise<unknown>)[] = [];

/** The exit code of a process that ends by itself. */
function exitOf(proc: Proc): Promise<number | null> {
  const { child } = proc;
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

test.afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await agent?.stop();
  await mock?.close();
  await pool?.end();
  await db?.$disconnect();
});

test("an owner runs the three commands the agents page prints in a clean folder, sees the agent online, then its earnings", async ({ page }, testInfo) => {
  test.setTimeout(180_000); // the agent starts twice, and its going offline is seen
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
  const steps = page.getByTestId("enroll-steps");
  await expect(steps).toBeVisible();
  const printed = async (testId: string) => (await page.getByTestId(testId).textContent())!;
  const [enrollCommand, configureCommand, startCommand] = [await printed("enroll-command"), await printed("config-command"), await printed("start-command")];
  await shot("agents-enroll");
  const m = /^\.\/wellspring-agent enroll --hub (\S+) --pin (\S+) --token (wse_\w+) --name office-agent$/.exec(enrollCommand);
  expect(m, enrollCommand).not.toBeNull();
  expect(m![1]).toBe("https://127.0.0.1:18788");

  // The owner's machine: a clean folder with only the agent's files, no Deno on PATH; the three commands the
  // page printed run there exactly as printed.
  const { root, agentDir } = await ownerFolder(await readImage());
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  const shell = (script: string) => startProc("sh", ["-c", script], { cwd: agentDir, env: ownerEnv() });
  const enrolling = shell(enrollCommand);
  const agentId = (await enrolling.waitForLine(/enrolled as (agt_\w+)/, 60_000))[1]!;
  expect(await exitOf(enrolling)).toBe(0);
  expect(await exitOf(shell(configureCommand))).toBe(0);
  const production = shell(startCommand);
  cleanups.push(() => production.stop());
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId(`agent-state-${agentId}`)).toHaveText("Online", { timeout: 500 });
    // The models of the printed configuration arrive with the agent's inventory, just after the handshake.
    await expect(page.getByTestId("agents-table")).toContainText("gpt-4o-mini, claude-haiku-4-5", { timeout: 500 });
  }).toPass({ timeout: 30_000 });
  await expect(page.getByTestId(`agent-next-${agentId}`)).toHaveCount(0); // online and serving: nothing to do
  await shot("agents-online");

  // Then the owner offers a model no other agent serves and restarts it; here its calls go to the mock provider
  // (a development flag: this machine has no internet).
  await production.stop();
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId(`agent-next-${agentId}`)).toContainText("./wellspring-agent start", { timeout: 500 });
  }).toPass({ timeout: 70_000 });
  const dataDir = join(agentDir, "data");
  const config = JSON.parse(await readFile(join(dataDir, "config.json"), "utf8")) as {
    upstreams: { provider: string; models: string[]; apiKey?: string; apiKeyEnv?: string }[];
  };
  for (const u of config.upstreams) {
    if (u.provider === "anthropic") u.models = ["claude-opus-4-1"];
    u.apiKey = "sk-owner-test-key"; // the test's agent process does not get the printed export
    delete u.apiKeyEnv;
  }
  await writeFile(join(dataDir, "config.json"), JSON.stringify(config));
  agent = await startAgentProc(dataDir, agentId, mock.origin);

  // A user's traffic, served by this owner's agent (the only agent offering claude-opus-4-1).
  const userId = newId("usr");
  await db.user.create({ data: { id: userId, email: `${userId}@buyer.test` } });
  await new Treasury(pool).grant("test", userId, 5_000_000n, "test credit");
  const { secret } = await issueKey(db, userId, "buyer");
  let official = 0n;
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${API}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": secret, "anthropic-version": "2023-06-01", "content-type": "application/json" },
      body: JSON.stringify({
        model: "claude-opus-4-1",
        max_tokens: 400,
        messages: [{ role: "user", content: "Hello [mock chunks=20 bytes=1200 output_tokens=300]" }],
      }),
    });
    expect(res.status).toBe(200);
    const u = ((await res.json()) as { usage: { input_tokens: number; output_tokens: number } }).usage;
    // claude-opus-4-1: $15 / $75 per 1M tokens.
    official += (BigInt(u.input_tokens) * 15_000_000n + BigInt(u.output_tokens) * 75_000_000n + 999_999n) / 1_000_000n;
  }
  const earned = (official * 7_000n) / 10_000n; // tier A, rounded down per request below
  // Settlements are written just after each response (batched), so the page shows all three moments later.
  let available = "";
  let canaryMicros = 0n;
  const ownerId = (await db.agent.findUniqueOrThrow({ where: { id: agentId } })).ownerId;
  await expect(async () => {
    await page.goto("/app/earnings");
    await expect(page.getByTestId("earnings-by-model")).toContainText("claude-opus-4-1", { timeout: 500 });
    // The hub canaries a new agent's chat models at once; the platform pays the owner for each that passed.
    const canaries = await new Treasury(pool).ownerCanaryPay(ownerId);
    expect(canaries.canaries).toBeGreaterThan(0);
    canaryMicros = canaries.micros;
    await expect(page.getByTestId("earnings-canaries")).toContainText(`${canaries.canaries} quality checks`, { timeout: 500 });
    available = (await page.getByTestId("earnings-available").textContent())!;
    const availableMicros = BigInt(Math.round(Number(available.replace(/[$,]/g, "")) * 1e6));
    expect(availableMicros - earned - canaries.micros).toBeLessThanOrEqual(0n); // per-request rounding down can only lower it…
    expect(earned + canaries.micros - availableMicros).toBeLessThanOrEqual(3n); // …by under 1 µUSD per request
  }).toPass({ timeout: 20_000 });
  await shot("earnings");

  await page.getByLabel("Amount ($)").fill("1000");
  await page.getByRole("button", { name: "Request payout" }).click();
  await expect(page.getByText("That is more than your unrequested earnings.")).toBeVisible();
  await page.getByLabel("Amount ($)").fill("0.00005");
  await page.getByRole("button", { name: "Request payout" }).click();
  await expect(page.getByText("The smallest payout is $0.01.")).toBeVisible();
  // The whole cents of what is available.
  const cents = (BigInt(Math.round(Number(available.replace(/[$,]/g, "")) * 1e6)) / 10_000n) * 10_000n;
  expect(cents).toBeGreaterThan(0n);
  const payout = `${cents / 1_000_000n}.${(cents % 1_000_000n).toString().padStart(6, "0").slice(0, 2)}`;
  await page.getByLabel("Amount ($)").fill(payout);
  await page.getByRole("button", { name: "Request payout" }).click();
  await expect(page.getByText(`Payout of $${payout} requested.`)).toBeVisible();
  await expect(page.getByTestId("payouts-pending")).toHaveText(`$${payout}`);
  await expect(page.getByTestId("payouts-table")).toContainText("pending");
  await shot("earnings-payout");

  // The rate mode: auto until the owner sets expert limits, which reach the live agent (it reports them back).
  await page.getByRole("link", { name: "Agents" }).click();
  await expect(page.getByTestId(`agent-rate-summary-${agentId}`)).toContainText("Auto");
  const rateForm = page.getByTestId(`agent-rate-form-${agentId}`);
  await rateForm.getByLabel("Expert").check();
  await rateForm.getByLabel("Requests / min").fill("1.5");
  await rateForm.getByRole("button", { name: "Save rate mode" }).click();
  await expect(rateForm.getByText("Requests per minute: a whole number from 1 to 100,000,000, or empty for none.")).toBeVisible();
  await rateForm.getByLabel("Requests / min").fill("600");
  await rateForm.getByLabel("At once").fill("4");
  await rateForm.getByRole("button", { name: "Save rate mode" }).click();
  await expect(rateForm.getByText("Saved: sent to the agent.")).toBeVisible();
  await expect(async () => {
    await page.reload();
    const summary = page.getByTestId(`agent-rate-summary-${agentId}`);
    await expect(summary).toHaveText("Expert: 600 requests/min, 4 at once", { timeout: 500 });
  }).toPass({ timeout: 10_000 });
  expect((await db.agent.findUniqueOrThrow({ where: { id: agentId } })).reportedRpm).toBe(600);
  await shot("agents-rate-expert");
  await page.getByTestId(`agent-rate-form-${agentId}`).getByLabel("Auto").check();
  await page.getByTestId(`agent-rate-form-${agentId}`).getByRole("button", { name: "Save rate mode" }).click();
  await expect(page.getByTestId(`agent-rate-summary-${agentId}`)).toContainText("Auto");

  // The agent page shows the receipt chain: the hub holds the three receipts the agent signed, and today's
  // earnings by the hub's settlements and by the agent's own price table agree.
  await page.getByRole("link", { name: "Agents" }).click();
  const ledger = page.getByTestId(`agent-ledger-${agentId}`);
  await expect(async () => {
    await page.reload();
    await expect(ledger.getByTestId("ledger-hub-tail")).toContainText("Hub: receipt 3", { timeout: 500 });
  }).toPass({ timeout: 15_000 });
  const today = (await ledger.getByTestId("ledger-today").textContent())!;
  const m2 = /Today: hub (\$[\d.,]+) · agent (\$[\d.,]+) \(3 receipts\)/.exec(today);
  expect(m2, today).not.toBeNull();
  expect(m2![1]).toBe(m2![2]);
  // The receipts are the requests': the balance holds them and what the platform paid for canaries.
  const micros = (text: string) => BigInt(Math.round(Number(text.replace(/[$,]/g, "")) * 1e6));
  expect(micros(m2![1]!)).toBe(micros(available) - canaryMicros);
  await expect(ledger.getByTestId("ledger-agent-tail")).toContainText("Agent: receipt");
  await expect(ledger.getByTestId("ledger-out-of-sync")).toHaveCount(0);
  await shot("agents-ledger");

  // The owner's provider fails: after ROUTING_BREAKER_FAILURES (5) errors the hub keeps the agent from that model, and the
  // agents page says so.
  mock.fault = { kind: "status", status: 500 };
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`${API}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": secret, "anthropic-version": "2023-06-01", "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-opus-4-1", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }),
    });
    expect(res.status).toBe(500);
  }
  mock.fault = null;
  await page.getByRole("link", { name: "Agents" }).click();
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId(`agent-breakers-${agentId}`)).toContainText("claude-opus-4-1 (circuit open since", { timeout: 500 });
  }).toPass({ timeout: 10_000 });
  await shot("agents-breaker-open");

  // Pausing takes the agent out of routing at once: the model has no capacity.
  await page.getByRole("button", { name: "Pause" }).click();
  await expect(page.getByRole("button", { name: "Resume" })).toBeVisible();
  await expect(async () => {
    const res = await fetch(`${API}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": secret, "anthropic-version": "2023-06-01", "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-opus-4-1", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }),
    });
    expect(res.status).toBe(503);
  }).toPass({ timeout: 5_000 });
  // Joining the discount lane is a request an administrator decides (the admin's side: risk-review.spec.ts).
  await page.getByRole("button", { name: "Request discount lane" }).click();
  await expect(page.getByTestId(`agent-lane-${agentId}`)).toContainText("waiting for an administrator");
  expect((await db.agent.findUniqueOrThrow({ where: { id: agentId } })).discountLane).toBe(false);
  await expect(page.getByRole("button", { name: "Withdraw lane request" })).toBeVisible();
  await shot("agents-paused");

  // The owner's machine loses the agent's ledger (a restored backup, a wiped disk): at its handshake the agent
  // reports an empty chain, the hub holds three receipts, and the page says the ledger is out of sync.
  await agent.stop();
  await rm(join(dataDir, "state", "ledger"), { recursive: true, force: true });
  agent = await startAgentProc(dataDir, agentId, mock.origin);
  await expect(async () => {
    await page.reload();
    await expect(ledger.getByTestId("ledger-out-of-sync")).toContainText("Ledger out of sync from receipt 1", { timeout: 500 });
  }).toPass({ timeout: 15_000 });
  await expect(ledger.getByTestId("ledger-agent-tail")).toContainText("Agent: receipt 0");
  await shot("agents-ledger-out-of-sync");
});
