/**
 * An administrator, in real Chromium against the hub started as `npm start` does: made with the documented
 * command, publishes a new price version (edit the draft, see the difference, publish) that a user's price
 * page then shows; reviews the risk flag the hub raised when a key owner ran one agent twice (the owner's
 * agent page warns them too) and suspends that agent with a note, audited; suspends and reactivates a user.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { HUB_AGENT_ORIGIN, HUB_DATA_DIR, hubDatabaseUrl, signInOnPage } from "./hub.ts";
import { expect, test, type Browser, type Page } from "@playwright/test";
import { createDb, type Db } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { DUPLICATE_AGENT_IDENTITY, type DuplicateEvidence } from "../../gateway/src/risk/duplicate_identity.ts";
import { spkiPin } from "../../gateway/src/tls.ts";
import { copyAgentData, enrollAgent, launchAgent, ROOT, startAgentProc, TSX, type Proc } from "../stack/harness.ts";

let db: Db;
let url: string;
let mock: MockProvider;
const agents: Proc[] = [];
const dirs: string[] = [];

test.beforeAll(async () => {
  url = await hubDatabaseUrl();
  db = createDb(url, { poolConnectionsMax: 2 });
  mock = await startMockProvider();
});

test.afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  await mock?.close();
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
  test.setTimeout(180_000); // two agents start in this journey
  const adminEmail = `admin-${Date.now()}@example.test`;
  const adminPassword = "admin password 456";
  // The first administrator, made with the documented command.
  const scratch = await mkdtemp(join(tmpdir(), "ws-admin-cli-"));
  const made = await promisify(execFile)(TSX, ["gateway/src/cli/admin.ts", "create-admin", "--email", adminEmail], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url, DATA_DIR: scratch, WELLSPRING_ADMIN_PASSWORD: adminPassword },
  });
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
  await expect(admin.getByTestId("price-diff")).toContainText("$1.10 / $4.80 / $0.275");
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

  // A key owner enrolls an agent, runs it, and then starts a copy of its data folder as well.
  const ownerEmail = `owner-${Date.now()}@example.test`;
  const owner = await (await browser.newContext()).newPage();
  await owner.goto("/signup");
  await owner.getByLabel("Email").fill(ownerEmail);
  await owner.getByLabel(/^Password/).fill("owner password 321");
  await owner.getByLabel(/offer capacity/).check();
  await owner.getByRole("button", { name: "Create account" }).click();
  await expect(owner).toHaveURL(/\/signin\?notice=signed-up$/, { timeout: 15_000 });
  await signInOnPage(owner, ownerEmail, "owner password 321");
  const ownerId = (await db.user.findUniqueOrThrow({ where: { email: ownerEmail } })).id;
  const pin = spkiPin(await readFile(join(HUB_DATA_DIR, "tls/tunnel-cert.pem")));
  const enrolled = await enrollAgent(db, { agentOrigin: HUB_AGENT_ORIGIN, pin }, ownerId, {
    models: { openai: ["gpt-4.1-nano"], anthropic: ["claude-haiku-4-5"] },
  });
  dirs.push(enrolled.dataDir);
  const live = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
  agents.push(live);
  const copyDir = await copyAgentData(enrolled.dataDir);
  dirs.push(copyDir);
  const copy = launchAgent(copyDir, mock.origin);
  agents.push(copy);
  await copy.waitForLine(/"event":"tunnel.duplicate_identity"/, 60_000);

  // The owner's agent page says so.
  await owner.getByRole("link", { name: "Agents" }).click();
  const warning = owner.getByTestId(`agent-duplicate-${enrolled.agentId}`);
  await expect(async () => {
    await owner.reload();
    await expect(warning).toBeVisible({ timeout: 500 });
    // The flag is written after the refusal, while the hub also canaries the new agent: allow a busy machine's time.
  }).toPass({ timeout: 30_000 });
  await expect(warning).toContainText(/Another copy of this agent tried to connect at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC from 127\.0\.0\.1; only one may run/);
  await expect(owner.getByTestId(`agent-state-${enrolled.agentId}`)).toHaveText("Online");
  await owner.screenshot({ path: testInfo.outputPath("owner-duplicate-warning.png"), fullPage: true });

  // The hub's detector raised a flag; the admin reviews it and suspends the agent.
  const raised = await db.riskFlag.findFirstOrThrow({ where: { kind: DUPLICATE_AGENT_IDENTITY, subject: `agent:${enrolled.agentId}` } });
  const flagId = raised.id;
  await admin.getByRole("link", { name: "Risk review" }).click();
  const flag = admin.getByTestId(`flag-${flagId}`);
  await expect(flag).toContainText("duplicate agent identity");
  await expect(flag).toContainText(`agent:${enrolled.agentId}`);
  await expect(flag).toContainText("127.0.0.1");
  await expect(flag).toContainText((raised.evidence as DuplicateEvidence).live.sessionId);
  await flag.getByRole("button", { name: "Suspend" }).click();
  await expect(flag.getByText("Write a note: it goes into the audit trail.")).toBeVisible();
  await flag.getByLabel("Note").fill("One agent identity running on two machines; suspended until the owner explains.");
  await flag.getByRole("button", { name: "Suspend" }).click();
  await expect(admin.getByTestId("decided-flags")).toContainText("running on two machines");
  await expect(admin.getByTestId("open-flags")).toHaveCount(0);
  await admin.screenshot({ path: testInfo.outputPath("admin-risk.png"), fullPage: true });

  expect((await db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } })).status).toBe("suspended");
  const trail = await db.auditEvent.findMany({ where: { subject: `flag:${flagId}` } });
  expect(trail.map((e) => e.action)).toEqual(["risk.suspended"]);
  // The suspension reaches the running agent: the hub closes its tunnel; the agent keeps running and asks again later.
  await live.waitForLine(/an administrator suspended this agent \(close code 4034\)/, 10_000);

  // Users & agents: reactivate the agent; suspend the user, whose next page load finds no session, and reactivate them.
  await admin.getByRole("link", { name: "Users & agents" }).click();
  await admin.getByLabel("Search").fill(ownerEmail);
  await admin.getByRole("button", { name: "Search" }).click();
  const agentRow = admin.getByTestId(`agent-${enrolled.agentId}`);
  await expect(agentRow).toContainText("suspended");
  await agentRow.getByRole("button", { name: "Reactivate" }).click();
  await expect(admin.getByTestId(`agent-${enrolled.agentId}`)).toContainText("active");
  expect((await db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } })).status).toBe("active");

  const buyer = await db.user.findUniqueOrThrow({ where: { email: userEmail } });
  await admin.getByLabel("Search").fill(userEmail);
  await admin.getByRole("button", { name: "Search" }).click();
  const row = admin.getByTestId(`user-${userEmail}`);
  await row.getByRole("button", { name: "Suspend" }).click();
  await row.getByRole("button", { name: "Yes, suspend" }).click();
  await expect(admin.getByTestId(`user-${userEmail}`)).toContainText("suspended");
  expect((await db.user.findUniqueOrThrow({ where: { id: buyer.id } })).status).toBe("suspended");
  await user.goto("/app");
  await expect(user).toHaveURL(/\/signin/);
  await admin.getByTestId(`user-${userEmail}`).getByRole("button", { name: "Reactivate" }).click();
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
