/**
 * Quality canaries in the portal, in real Chromium against the hub `npm start` runs (its first canary of an agent ×
 * model right after the agent connects: CANARY_FIRST_DELAY_MS_MAX=0 in playwright.config.ts). Two owners' agents:
 * one behind an honest provider, one behind a provider answering as another model with another tokenizer's counts
 * (the mock's `substitute`). The admin's Users & agents page shows each agent's canaries as the hub recorded them;
 * the substituting agent's `model_substitution` flag, raised by the canary, is in the risk review, and the admin
 * dismisses it with a note.
 */
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { expect, test } from "@playwright/test";
import { createDb, hashPassword, newId, type Db } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { spkiPin } from "../../gateway/src/tls.ts";
import { enrollAgent, startAgentProc, type AgentProc } from "../stack/harness.ts";
import { HUB_AGENT_ORIGIN, HUB_DATA_DIR, hubDatabaseUrl, signInOnPage } from "./hub.ts";

const MODELS = { openai: ["gpt-4o-mini"], anthropic: ["claude-haiku-4-5"] };

let db: Db;
const mocks: MockProvider[] = [];
const agents: AgentProc[] = [];

test.beforeAll(async () => {
  db = createDb(await hubDatabaseUrl(), { poolConnectionsMax: 2 });
});

test.afterAll(async () => {
  for (const a of agents) {
    await a.stop();
    await rm(a.dataDir, { recursive: true, force: true });
  }
  for (const m of mocks) await m.close();
  await db?.$disconnect();
});

/** A new owner's agent offering MODELS, its provider calls going to `mock`. */
async function ownerAgent(mock: MockProvider): Promise<AgentProc> {
  const ownerId = newId("usr");
  await db.user.create({ data: { id: ownerId, email: `${ownerId}@canary-owner.test`, isOwner: true } });
  const pin = spkiPin(await readFile(join(HUB_DATA_DIR, "tls/tunnel-cert.pem")));
  const enrolled = await enrollAgent(db, { agentOrigin: HUB_AGENT_ORIGIN, pin }, ownerId, { models: MODELS });
  const agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
  agents.push(agent);
  return agent;
}

test("an admin sees each agent's canaries, and reviews the substitution a canary found", async ({ page }, testInfo) => {
  test.setTimeout(180_000);
  const admin = { email: `canary-admin-${Date.now()}@example.test`, password: "canary admin password 1" };
  await db.user.create({ data: { id: newId("usr"), email: admin.email, isAdmin: true, passwordHash: await hashPassword(admin.password) } });
  const honestMock = await startMockProvider();
  const cheatMock = await startMockProvider({ substitute: { model: "cheap-model-1", inputTokensFactor: 2.5 } });
  mocks.push(honestMock, cheatMock);
  const honest = await ownerAgent(honestMock);
  const cheat = await ownerAgent(cheatMock);

  // The hub canaries each agent's two chat models once, soon after it connects.
  await expect(async () => {
    for (const agentId of [honest.agentId, cheat.agentId]) expect(await db.canaryResult.count({ where: { agentId } })).toBe(2);
  }).toPass({ timeout: 60_000 });

  await signInOnPage(page, admin.email, admin.password);
  await page.goto(`/app/admin/accounts?q=${honest.agentId}`);
  const honestCell = page.getByTestId(`agent-canaries-${honest.agentId}`);
  await expect(honestCell).toContainText("last ok");
  await expect(honestCell).toContainText("2 runs");
  await expect(honestCell).toContainText("errors 0.0%");
  await expect(honestCell).toContainText(/TTFB p50 \d+ ms/);
  await expect(honestCell).toContainText("too few runs to recommend a tier");
  await page.screenshot({ path: testInfo.outputPath("canaries-honest.png"), fullPage: true });

  await page.goto(`/app/admin/accounts?q=${cheat.agentId}`);
  const cheatCell = page.getByTestId(`agent-canaries-${cheat.agentId}`);
  await expect(cheatCell).toContainText("last failed (model_differs, prompt_tokens_out_of_range)");
  await expect(cheatCell).toContainText("2 substituted");
  await page.screenshot({ path: testInfo.outputPath("canaries-substituted.png"), fullPage: true });

  // The canary's flag, in the risk review: the models claimed and answered, counts — and the admin dismisses it.
  const flag = await db.riskFlag.findFirstOrThrow({ where: { kind: "model_substitution", subject: `agent:${cheat.agentId}`, status: "open" } });
  await page.goto("/app/admin/risk");
  const row = page.getByTestId(`flag-${flag.id}`);
  await expect(row).toContainText("model substitution");
  await expect(row).toContainText("cheap-model-1");
  await expect(row).toContainText("prompt_tokens_out_of_range");
  await row.getByLabel("Note").fill("canary test: the provider answered as another model");
  await row.getByRole("button", { name: "Dismiss" }).click();
  await expect(page.getByTestId(`flag-${flag.id}`)).toHaveCount(0);
  expect((await db.riskFlag.findUniqueOrThrow({ where: { id: flag.id } })).status).toBe("dismissed");
  expect(await db.riskFlag.count({ where: { kind: "model_substitution", subject: `agent:${honest.agentId}` } })).toBe(0);
});
