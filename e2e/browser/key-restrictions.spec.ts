/**
 * A key restricted to named owners and a minimum tier, in real Chromium against the hub started as the README
 * says, with a real Deno agent (tier A) and the mock provider upstream: the user creates a key served only by
 * another owner's agents (none connected: the API answers 503), edits it to the agent's owner (the next call is
 * served at once), then to tier S only (refused again: the agent is tier A). Bad input gets its field's error.
 */
import { join } from "node:path";
import { HUB_AGENT_ORIGIN, HUB_API, HUB_DATA_DIR, hubDatabaseUrl, signInOnPage } from "./hub.ts";
import { expect, test, type Locator } from "@playwright/test";
import { createDb, hashPassword, newId, type Db } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { ensureTlsIdentity } from "../../gateway/src/tls.ts";
import { enrollAgent, fund, startAgentProc, type AgentProc } from "../stack/harness.ts";

let mock: MockProvider;
let agent: AgentProc;
let db: Db;
const run = newId("usr").slice(4, 14);
const agentOwner = `agents-${run}@owner.test`;
const otherOwner = `other-${run}@owner.test`;
const user = { email: `user-${run}@example.test`, password: "restricted keys 1" };

test.beforeAll(async () => {
  const url = await hubDatabaseUrl();
  db = createDb(url, { poolConnectionsMax: 2 });
  mock = await startMockProvider();
  const ownerId = newId("usr");
  await db.user.create({ data: { id: ownerId, email: agentOwner, isOwner: true } });
  await db.user.create({ data: { id: newId("usr"), email: otherOwner, isOwner: true } });
  const userId = newId("usr");
  await db.user.create({ data: { id: userId, email: user.email, passwordHash: await hashPassword(user.password) } });
  await fund(url, userId, 5_000_000n);
  const { pin } = await ensureTlsIdentity({ dir: join(HUB_DATA_DIR, "tls") });
  const enrolled = await enrollAgent(db, { agentOrigin: HUB_AGENT_ORIGIN, pin }, ownerId);
  agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
});

test.afterAll(async () => {
  await agent?.stop();
  await mock?.close();
  await db?.$disconnect();
});

const call = (secret: string) =>
  fetch(`${HUB_API}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", max_tokens: 20, messages: [{ role: "user", content: "Hello" }] }),
  });

test("a key restricted to owners and a minimum tier: created, shown, edited, and followed by the gateway at once", async ({ page }, testInfo) => {
  const shot = (name: string) => page.screenshot({ path: testInfo.outputPath(`${name}.png`), fullPage: true });
  await signInOnPage(page, user.email, user.password);
  await page.getByRole("link", { name: "API keys" }).click();
  const create = page.getByRole("form", { name: "Create a key" });

  // Bad input: each field says what is wrong, and no key is made.
  await create.getByLabel("Name").fill("restricted");
  await create.getByLabel(/^Agent owners/).fill("not-an-email");
  await create.getByRole("button", { name: "Create key" }).click();
  await expect(create.getByText("“not-an-email” is not an email address.", { exact: false })).toBeVisible();
  await create.getByLabel(/^Agent owners/).fill(user.email);
  await create.getByRole("button", { name: "Create key" }).click();
  await expect(create.getByText(`No agent owner has the email “${user.email}”.`)).toBeVisible();
  await shot("key-restriction-errors");

  // Served only by an owner with no agent connected: the gateway has no agent for it.
  await create.getByLabel(/^Agent owners/).fill(otherOwner);
  await create.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByTestId("new-key-secret").textContent())!;
  const row: Locator = page.getByTestId("keys-table").locator("tr", { hasText: "restricted" });
  await expect(row.getByTestId("key-agents")).toHaveText(`served only by agents of ${otherOwner}`);
  const refused = await call(secret);
  expect(refused.status).toBe(503);
  expect(((await refused.json()) as { error: { message: string } }).error.message).toContain("owner allowlist or minimum tier");

  // Edited to the agent's owner: the next call is served.
  const edit = page.getByRole("form", { name: "Agents for restricted" });
  await page.getByText("Edit which agents serve “restricted”").click();
  await edit.getByLabel(/^Agent owners/).fill(`${agentOwner}, ${otherOwner}`);
  await edit.getByLabel("Minimum agent tier").selectOption("A");
  await edit.getByRole("button", { name: "Save" }).click();
  await expect(edit.getByRole("status")).toContainText("Saved");
  await expect(row.getByTestId("key-agents")).toHaveText(`served only by agents of ${agentOwner}, ${otherOwner}, tier A or S`);
  await shot("key-restriction-edited");
  // The gateway drops the key from its cache on the change's hub event (delivered after the commit).
  await expect.poll(async () => (await call(secret)).status, { timeout: 2_000, intervals: [0, 50, 100] }).toBe(200);

  // Tier S only: the agent is tier A, so nothing serves the key.
  await edit.getByLabel("Minimum agent tier").selectOption("S");
  await edit.getByRole("button", { name: "Save" }).click();
  await expect(row.getByTestId("key-agents")).toHaveText(`served only by agents of ${agentOwner}, ${otherOwner}, tier S only`);
  await expect.poll(async () => (await call(secret)).status, { timeout: 2_000, intervals: [0, 50, 100] }).toBe(503);

  // An email that is no owner's is refused on the edit form too, and the key keeps its restriction.
  await edit.getByLabel(/^Agent owners/).fill(`nobody-${run}@owner.test`);
  await edit.getByRole("button", { name: "Save" }).click();
  await expect(edit.getByText(`No agent owner has the email “nobody-${run}@owner.test”.`)).toBeVisible();
  await page.reload();
  await expect(page.getByTestId("keys-table").locator("tr", { hasText: "restricted" }).getByTestId("key-agents")).toHaveText(
    `served only by agents of ${agentOwner}, ${otherOwner}, tier S only`,
  );
  await shot("key-restriction-kept");
});
