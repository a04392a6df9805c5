/** The first administrator: setup tokens are single use, expire (injected clock), and setup closes once an admin exists. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { completeSetup, createAdministrator, issueSetupToken, SETUP_TOKEN_TTL_MS } from "./administrators.ts";

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
}, 60_000);
afterAll(async () => {
  await database?.drop();
});

it("a setup token makes exactly one first administrator, only before it expires, and setup then closes", async () => {
  const db = database.db;
  const t0 = new Date("2026-12-01T00:00:00Z");
  const issued = (await issueSetupToken(db, t0))!;
  expect(issued.token).toMatch(/^wss_[0-9a-z]{40}$/);
  expect(issued.expiresAt.getTime() - t0.getTime()).toBe(SETUP_TOKEN_TTL_MS);
  const stored = await db.adminSetupToken.findMany();
  expect(stored.map((s) => s.tokenHash)).not.toContain(issued.token); // only the hash is kept

  const input = { token: issued.token, email: "First@Example.test", password: "first admin password" };
  expect(await completeSetup(db, { ...input, password: "short" }, t0)).toMatchObject({
    ok: false,
    reason: "invalid",
    errors: { password: expect.any(String) },
  });
  expect(await completeSetup(db, { ...input, token: "wss_" + "0".repeat(40) }, t0)).toMatchObject({
    ok: false,
    reason: "invalid",
    errors: { token: expect.stringContaining("not valid") },
  });
  const late = new Date(t0.getTime() + SETUP_TOKEN_TTL_MS);
  expect(await completeSetup(db, input, late)).toMatchObject({ ok: false, reason: "invalid" });

  // Two visitors with the same link at once: one administrator.
  const [a, b] = await Promise.all([completeSetup(db, input, t0), completeSetup(db, { ...input, email: "second@example.test" }, t0)]);
  expect([a.ok, b.ok].filter(Boolean)).toHaveLength(1);
  expect(await db.user.count({ where: { isAdmin: true } })).toBe(1);
  expect(await completeSetup(db, input, t0)).toEqual({ ok: false, reason: "closed" });
  expect(await issueSetupToken(db, t0)).toBeNull();
  const audit = await db.auditEvent.findMany({ where: { action: "account.admin_created" } });
  expect(audit).toHaveLength(1);
  expect(audit[0]!.actor).toMatch(/^setup:stp_/);

  // Later administrators come from the CLI's function, with the operator in the audit trail.
  const later = await createAdministrator(db, { email: "ops@example.test", password: "ops admin password", actor: "cli:test" });
  expect((await db.user.findUniqueOrThrow({ where: { id: later.id } })).isAdmin).toBe(true);
});
