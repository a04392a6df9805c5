/**
 * Tenancy over HTTP, the way an attacker would try it: signed in as one account, submit the portal's own
 * forms with another account's object ids (hidden fields rewritten in the page) and request its pages and
 * exports with the other's ids. Each answer finds nothing; nothing of the other account changes.
 */
import { hubDatabaseUrl } from "./hub.ts";
import { expect, test, type Page } from "@playwright/test";
import { createDb, hashPassword, newId, type Db } from "@wellspring/db";
import { issueKey } from "../../gateway/src/ops/keys.ts";

let db: Db;
const victim = { userId: "", keyId: "", agentId: "", email: "" };
const attacker = { userId: "", email: "", password: "attacker password 1" };

test.beforeAll(async () => {
  db = createDb(await hubDatabaseUrl(), { poolConnectionsMax: 2 });
  victim.userId = newId("usr");
  victim.email = `${victim.userId}@victim.test`;
  await db.user.create({ data: { id: victim.userId, email: victim.email, isOwner: true } });
  victim.keyId = (await issueKey(db, victim.userId, "victim key")).id;
  victim.agentId = newId("agt");
  await db.agent.create({ data: { id: victim.agentId, ownerId: victim.userId, name: "victim agent", publicKey: `pk-${victim.agentId}` } });
  await db.requestRecord.create({
    data: {
      id: newId("req"),
      userId: victim.userId,
      keyId: victim.keyId,
      gatewayId: "gw_t",
      route: "/v1/chat/completions",
      provider: "openai",
      model: "gpt-4o",
      httpStatus: 200,
      endCause: "completed",
      startedAt: new Date(),
      durationMs: 5,
    },
  });
  attacker.userId = newId("usr");
  attacker.email = `${attacker.userId}@attacker.test`;
  await db.user.create({ data: { id: attacker.userId, email: attacker.email, isOwner: true, passwordHash: await hashPassword(attacker.password) } });
  await issueKey(db, attacker.userId, "own key");
  await db.agent.create({ data: { id: newId("agt"), ownerId: attacker.userId, name: "own agent", publicKey: `pk-own-${attacker.userId}` } });
});

test.afterAll(async () => {
  await db?.$disconnect();
});

async function signIn(page: Page): Promise<void> {
  await page.goto("/signin");
  await page.getByLabel("Email").fill(attacker.email);
  await page.getByLabel("Password").fill(attacker.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/app$/);
}

/**
 * Submits the page's form with the hidden field `name` set to `value`. The page must be hydrated first
 * (React restores controlled values when it renders), and the value is also set in the submitted FormData
 * itself, so a re-render between the rewrite and the click cannot put the real id back.
 */
async function submitWith(page: Page, name: string, value: string, button: string): Promise<void> {
  await page.waitForLoadState("networkidle");
  await page.evaluate(
    ([n, v]) => {
      for (const input of document.querySelectorAll<HTMLInputElement>(`input[type=hidden][name="${n}"]`)) input.value = v!;
      document.addEventListener("formdata", (e) => e.formData.set(n!, v!), { capture: true });
    },
    [name, value],
  );
  await page.getByRole("button", { name: button }).first().click();
  await page.waitForLoadState("networkidle");
}

test("another account's ids find nothing and change nothing, through every form and page", async ({ page }) => {
  await signIn(page);
  const cases: { what: string; run: () => Promise<void>; unchanged: () => Promise<unknown>; expected: unknown }[] = [
    {
      what: "revoke key form with the victim's key id",
      run: async () => {
        await page.goto("/app/keys");
        await page.getByRole("button", { name: "Revoke own key" }).click(); // revoking asks first
        await submitWith(page, "keyId", victim.keyId, "Yes, revoke");
      },
      unchanged: async () => (await db.virtualKey.findUniqueOrThrow({ where: { id: victim.keyId } })).status,
      expected: "active",
    },
    {
      what: "pause agent form with the victim's agent id",
      run: async () => {
        await page.goto("/app/agents");
        await submitWith(page, "agentId", victim.agentId, "Pause");
      },
      unchanged: async () => (await db.agent.findUniqueOrThrow({ where: { id: victim.agentId } })).status,
      expected: "active",
    },
    {
      what: "discount lane form with the victim's agent id",
      run: async () => {
        await page.goto("/app/agents");
        await submitWith(page, "agentId", victim.agentId, "Request discount lane");
      },
      unchanged: async () => {
        const a = await db.agent.findUniqueOrThrow({ where: { id: victim.agentId } });
        return { lane: a.discountLane, requested: a.discountLaneRequestedAt };
      },
      expected: { lane: false, requested: null },
    },
    {
      what: "usage page filtered by the victim's key",
      run: async () => {
        await page.goto(`/app/usage?key=${victim.keyId}`);
        await expect(page.getByTestId("usage-empty")).toHaveText("No requests match these filters.");
      },
      unchanged: async () => db.requestRecord.count({ where: { userId: victim.userId } }),
      expected: 1,
    },
    {
      what: "CSV export filtered by the victim's key",
      run: async () => {
        const csv = await (await page.request.get(`/app/usage/export?key=${victim.keyId}`)).text();
        expect(csv.trim().split("\n")).toHaveLength(1); // the header only
      },
      unchanged: async () => db.requestRecord.count({ where: { userId: victim.userId } }),
      expected: 1,
    },
    {
      what: "admin pages without the admin role",
      run: async () => {
        for (const path of ["/app/admin/system", "/app/admin/accounts", "/app/admin/prices", "/app/admin/risk", "/app/admin/payouts", "/app/admin/codes"]) {
          await page.goto(path);
          await expect(page, path).toHaveURL(/\/app$/);
        }
      },
      unchanged: async () => (await db.user.findUniqueOrThrow({ where: { id: victim.userId } })).status,
      expected: "active",
    },
  ];
  for (const c of cases) {
    await c.run();
    expect(await c.unchanged(), c.what).toEqual(c.expected);
  }
  // The attacker's own objects were the only ones the forms could touch.
  const own = await db.virtualKey.findFirstOrThrow({ where: { userId: attacker.userId } });
  expect(own.status).toBe("active");
  // Signed out, every portal page and export sends to sign-in / answers 401.
  await page.context().clearCookies();
  await page.goto("/app/keys");
  await expect(page).toHaveURL(/\/signin/);
  expect((await page.request.get("/app/usage/export")).status()).toBe(401);
});
