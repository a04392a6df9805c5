/**
 * An administrator reviews a flag the hub's own detector raised, in real Chromium against the hub started as
 * `npm start` does: a key owner's agent sits behind a provider that makes up usage (the mock provider reporting a
 * million tokens), a user's call through it is capped and flagged (usage divergence) and its earning held. The
 * owner's earnings page says why. On the flag's page the admin reads the evidence, holds the owner's other
 * earnings, suspends the agent (its tunnel is closed at once), reinstates it and releases the earnings — each
 * with a note, shown in the flag's history and kept in the audit trail with the admin and the UTC time. Then the
 * owner requests the discount lane, which the admin refuses (the owner reads why) and later approves.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { HUB_AGENT_ORIGIN, HUB_API, HUB_DATA_DIR, hubDatabaseUrl, signInOnPage, signUpOnPage } from "./hub.ts";
import { expect, test, type Browser, type Page } from "@playwright/test";
import pg from "pg";
import { createDb, newId, type Db } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { Treasury } from "../../gateway/src/ops/treasury.ts";
import { USAGE_DIVERGENCE } from "../../gateway/src/risk/usage_divergence.ts";
import { spkiPin } from "../../gateway/src/tls.ts";
import { enrollAgent, ROOT, startAgentProc, TSX, type AgentProc } from "../stack/harness.ts";

let db: Db;
let pool: pg.Pool;
let url: string;
let mock: MockProvider;
let agent: AgentProc | null = null;
const dirs: string[] = [];

test.beforeAll(async () => {
  url = await hubDatabaseUrl();
  db = createDb(url, { poolConnectionsMax: 2 });
  pool = new pg.Pool({ connectionString: url, max: 2 });
  mock = await startMockProvider();
});

test.afterAll(async () => {
  await agent?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  await mock?.close();
  await pool?.end();
  await db?.$disconnect();
});

async function signUp(browser: Browser, email: string, password: string, owner: boolean): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  await signUpOnPage(page, email, password, owner);
  return page;
}

/** A call through the hub with a buyer's key; its request id. */
async function call(secret: string, content: string): Promise<{ status: number; requestId: string | null }> {
  const res = await fetch(`${HUB_API}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4.1-nano", messages: [{ role: "user", content }] }),
  });
  await res.arrayBuffer();
  return { status: res.status, requestId: res.headers.get("x-wellspring-request-id") };
}

test("an admin reviews a usage-divergence flag a detector raised and holds, suspends, reinstates and releases", async ({ browser }, testInfo) => {
  test.setTimeout(180_000);
  const shot = (page: Page, name: string) => page.screenshot({ path: testInfo.outputPath(`${name}.png`), fullPage: true });
  const stamp = Date.now();
  const adminEmail = `risk-admin-${stamp}@example.test`;
  const adminPassword = "risk admin password 1";
  const scratch = await mkdtemp(join(tmpdir(), "ws-admin-cli-"));
  await promisify(execFile)(TSX, ["gateway/src/cli/admin.ts", "create-admin", "--email", adminEmail], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url, DATA_DIR: scratch, WELLSPRING_ADMIN_PASSWORD: adminPassword },
  });
  await rm(scratch, { recursive: true, force: true });

  // A key owner signs up and runs an agent whose provider makes up usage when asked to.
  const ownerEmail = `risk-owner-${stamp}@example.test`;
  const owner = await signUp(browser, ownerEmail, "risk owner password 2", true);
  const ownerId = (await db.user.findUniqueOrThrow({ where: { email: ownerEmail } })).id;
  const pin = spkiPin(await readFile(join(HUB_DATA_DIR, "tls/tunnel-cert.pem")));
  const enrolled = await enrollAgent(db, { agentOrigin: HUB_AGENT_ORIGIN, pin }, ownerId, {
    models: { openai: ["gpt-4.1-nano"], anthropic: ["claude-haiku-4-5"] },
  });
  dirs.push(enrolled.dataDir);
  agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);

  // A user's traffic: two honest calls, then one the provider reports a million tokens for.
  const buyerId = newId("usr");
  await db.user.create({ data: { id: buyerId, email: `${buyerId}@buyer.test` } });
  await new Treasury(pool).grant("test", buyerId, 5_000_000n, "test credit");
  const { secret } = await issueKey(db, buyerId, "buyer");
  await expect(async () => expect((await call(secret, "Hello")).status).toBe(200)).toPass({ timeout: 20_000 }); // the agent's inventory arrives
  expect((await call(secret, "Hello again")).status).toBe(200);
  const fabricated = await call(secret, "[mock input_tokens=1000000 output_tokens=1000000] Hello");
  expect(fabricated.status).toBe(200);

  // The hub's detector raised the flag and held that request's earning.
  let flagId = "";
  await expect(async () => {
    const flag = await db.riskFlag.findFirst({ where: { kind: USAGE_DIVERGENCE, subject: `agent:${enrolled.agentId}`, status: "open" } });
    expect(flag).not.toBeNull();
    expect(await db.earningHold.count({ where: { flagId: flag!.id, requestId: fabricated.requestId } })).toBe(1);
    flagId = flag!.id;
  }).toPass({ timeout: 10_000 });

  // The owner sees why some earnings are held.
  await owner.goto("/app/earnings");
  await expect(async () => {
    await owner.reload();
    await expect(owner.getByTestId("earnings-held-reasons")).toContainText("reported more tokens than the hub counted", { timeout: 500 });
  }).toPass({ timeout: 10_000 });
  const treasury = new Treasury(pool);
  const available = async () => {
    const holds = await db.earningHold.aggregate({ where: { ownerId, status: "held" }, _sum: { amountMicros: true } });
    return (await treasury.ownerBalance(ownerId)) - (holds._sum.amountMicros ?? 0n);
  };
  const honestEarnings = await available();
  expect(honestEarnings).toBeGreaterThan(0n);

  // The admin opens the flag from the risk review.
  const admin = await (await browser.newContext()).newPage();
  await signInOnPage(admin, adminEmail, adminPassword);
  await admin.getByRole("link", { name: "Risk review" }).click();
  await admin.getByTestId(`flag-${flagId}`).getByRole("link", { name: "Review and act" }).click();
  await expect(admin).toHaveURL(new RegExp(`/app/admin/risk/${flagId}$`));
  await expect(admin.getByTestId("flag-evidence")).toContainText("1000000");
  await expect(admin.getByTestId("flag-evidence")).toContainText(fabricated.requestId!);
  await expect(admin.getByTestId("flag-subject-status")).toHaveText("(active)");
  await expect(admin.getByTestId("flag-held")).toContainText("(1 hold)");
  await expect(admin.getByTestId("flag-history-empty")).toBeVisible();

  // Hold the owner's other earnings: a note is required.
  const actions = admin.getByTestId("flag-actions");
  await actions.getByRole("button", { name: "Hold available earnings" }).click();
  await expect(actions.getByText("Write a note: it goes into the audit trail.")).toBeVisible();
  await actions.getByLabel("Note for the action").fill("Made-up usage: holding all earnings until the owner explains.");
  await actions.getByRole("button", { name: "Hold available earnings" }).click();
  await expect(actions.getByRole("status")).toHaveText("Earnings held.");
  await expect(admin.getByTestId("flag-held")).toContainText("(2 holds)");
  expect(await available()).toBe(0n);
  expect((await treasury.requestPayout(ownerId, 1n)).outcome).toBe("insufficient_earnings");

  // Suspend the agent: the hub closes its tunnel at once, and the user's next call finds no agent.
  await actions.getByLabel("Note for the action").fill("Suspended while the provider is investigated.");
  await actions.getByRole("button", { name: "Suspend agent" }).click();
  await expect(actions.getByRole("status")).toHaveText("Suspended.");
  await expect(admin.getByTestId("flag-subject-status")).toHaveText("(suspended)");
  await agent.waitForLine(/close code 4034/, 10_000);
  expect((await call(secret, "Hello after suspension")).status).toBeGreaterThanOrEqual(400);
  await shot(admin, "risk-flag-suspended");

  // The owner's agents page says an administrator suspended it.
  await owner.getByRole("link", { name: "Agents" }).click();
  await expect(owner.getByText(/An administrator suspended this agent/)).toBeVisible();

  // Reinstate, then release everything the flag held.
  await actions.getByLabel("Note for the action").fill("Owner replaced the provider; reinstated.");
  await actions.getByRole("button", { name: "Reinstate agent" }).click();
  await expect(actions.getByRole("status")).toHaveText("Reinstated.");
  await expect(admin.getByTestId("flag-subject-status")).toHaveText("(active)");
  await actions.getByLabel("Note for the action").fill("Released after review.");
  await actions.getByRole("button", { name: "Release held earnings" }).click();
  await expect(actions.getByRole("status")).toHaveText("Earnings released.");
  await expect(admin.getByTestId("flag-held")).toContainText("$0.00 (0 holds)");
  await expect(actions.getByRole("button", { name: "Release held earnings" })).toHaveCount(0);

  // What was done: every action, by whom, when (UTC), with its note.
  const history = admin.getByTestId("flag-history");
  await expect(history.locator("tbody tr")).toHaveCount(4);
  await expect(history).toContainText("Held earnings");
  await expect(history).toContainText("Made-up usage: holding all earnings until the owner explains.");
  await expect(history).toContainText("Suspended");
  await expect(history).toContainText("Reinstated");
  await expect(history).toContainText("Released earnings");
  await expect(history).toContainText(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
  await shot(admin, "risk-flag-history");

  const adminId = (await db.user.findUniqueOrThrow({ where: { email: adminEmail } })).id;
  const trail = await db.auditEvent.findMany({ where: { subject: `flag:${flagId}` }, orderBy: { id: "asc" } });
  expect(trail.map((e) => [e.action, e.actor])).toEqual([
    ["risk.hold_earnings", `user:${adminId}`],
    ["risk.suspend_subject", `user:${adminId}`],
    ["risk.unsuspend_subject", `user:${adminId}`],
    ["risk.release_earnings", `user:${adminId}`],
  ]);
  expect(await available()).toBeGreaterThanOrEqual(honestEarnings);
  await owner.goto("/app/earnings");
  await expect(owner.getByTestId("earnings-held")).toHaveText("$0.00");

  // The owner asks for the discount lane; the admin refuses once (the owner reads the note), then approves.
  await owner.goto("/app/agents");
  await owner.getByRole("button", { name: "Request discount lane" }).click();
  await expect(owner.getByTestId(`agent-lane-${enrolled.agentId}`)).toContainText("waiting for an administrator");
  await admin.goto("/app/admin/risk");
  const lane = admin.getByTestId(`lane-${enrolled.agentId}`);
  await expect(lane).toContainText(ownerEmail);
  await lane.getByLabel("Lane note").fill("Not while the usage review is recent.");
  await lane.getByRole("button", { name: "Refuse lane" }).click();
  await expect(admin.getByTestId(`lane-${enrolled.agentId}`)).toHaveCount(0);
  await owner.reload();
  await expect(owner.getByTestId(`agent-lane-${enrolled.agentId}`)).toContainText("Discount lane refused");
  await expect(owner.getByTestId(`agent-lane-${enrolled.agentId}`)).toContainText("Not while the usage review is recent.");
  await owner.getByRole("button", { name: "Request discount lane" }).click();
  await expect(owner.getByTestId(`agent-lane-${enrolled.agentId}`)).toContainText("waiting for an administrator");
  expect((await db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } })).discountLane).toBe(false);
  await admin.reload();
  await admin.getByTestId(`lane-${enrolled.agentId}`).getByLabel("Lane note").fill("Approved after a clean month.");
  await admin.getByTestId(`lane-${enrolled.agentId}`).getByRole("button", { name: "Approve lane" }).click();
  await expect(admin.getByTestId(`lane-${enrolled.agentId}`)).toHaveCount(0);
  await owner.reload();
  await expect(owner.getByTestId("agents-table")).toContainText("discount lane");
  await expect(owner.getByRole("button", { name: "Leave discount lane" })).toBeVisible();
  expect((await db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } })).discountLane).toBe(true);
  const laneTrail = await db.auditEvent.findMany({
    where: { subject: `agent:${enrolled.agentId}`, action: { startsWith: "agent.discount_lane" } },
    orderBy: { id: "asc" },
  });
  expect(laneTrail.map((e) => [e.action, e.actor])).toEqual([
    ["agent.discount_lane_refused", `user:${adminId}`],
    ["agent.discount_lane_approved", `user:${adminId}`],
  ]);
});
