/**
 * Response routes in PostgreSQL: only the user whose key made a response reaches it, a deleted one is
 * forgotten, and routes older than RESPONSE_ROUTE_TTL_MS are pruned (an injected clock, no sleeps) from the
 * table and from memory, by any gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { createLogger } from "../log.ts";
import { RESPONSE_ROUTE_TTL_MS, StickyRoutes } from "./sticky.ts";

let database: TestDatabase;
const log = createLogger({}, "error", () => {});
let clock = Date.UTC(2026, 0, 1);
const now = () => clock;
const DAY_MS = 24 * 60 * 60 * 1000;

beforeAll(async () => {
  database = await createTestDatabase();
}, 120_000);

afterAll(async () => {
  await database?.drop();
});

describe("StickyRoutes", () => {
  it("answers the user who made the response, from memory and from the table (another gateway); any other user gets null", async () => {
    const here = new StickyRoutes(database.db, log, now);
    await here.record("resp_u1", { agentId: "agt_a", userId: "usr_1", model: "gpt-4o-mini" });
    const elsewhere = new StickyRoutes(database.db, log, now);
    for (const routes of [here, elsewhere]) {
      expect(await routes.routeOf("resp_u1", "usr_1")).toMatchObject({ agentId: "agt_a", userId: "usr_1", model: "gpt-4o-mini" });
      expect(await routes.routeOf("resp_u1", "usr_2")).toBeNull();
      expect(await routes.routeOf("resp_unknown", "usr_1")).toBeNull();
    }
  });

  it("a row from before routes named their user is reached by no one", async () => {
    await database.db.responseRoute.create({ data: { responseId: "resp_old", agentId: "agt_a", createdAt: new Date(clock) } });
    expect(await new StickyRoutes(database.db, log, now).routeOf("resp_old", "usr_1")).toBeNull();
  });

  it("a deleted response is forgotten here and in the table", async () => {
    const routes = new StickyRoutes(database.db, log, now);
    await routes.record("resp_del", { agentId: "agt_a", userId: "usr_1", model: "gpt-4o-mini" });
    await routes.forget("resp_del");
    expect(await routes.routeOf("resp_del", "usr_1")).toBeNull();
    expect(await database.db.responseRoute.count({ where: { responseId: "resp_del" } })).toBe(0);
  });

  it("routes older than the TTL are pruned from the table and memory; younger ones stay", async () => {
    const routes = new StickyRoutes(database.db, log, now);
    await routes.record("resp_aged", { agentId: "agt_a", userId: "usr_1", model: "gpt-4o-mini" });
    clock += 2 * DAY_MS;
    await routes.record("resp_young", { agentId: "agt_b", userId: "usr_1", model: "gpt-4o-mini" });
    clock += RESPONSE_ROUTE_TTL_MS - DAY_MS; // resp_aged is past the TTL, resp_young is not
    expect(await routes.routeOf("resp_aged", "usr_1")).toBeNull(); // expired before any prune
    expect(await routes.prune()).toBeGreaterThanOrEqual(1);
    expect(await database.db.responseRoute.findMany({ where: { responseId: { in: ["resp_aged", "resp_young"] } }, select: { responseId: true } })).toEqual([
      { responseId: "resp_young" },
    ]);
    expect(await routes.routeOf("resp_young", "usr_1")).toMatchObject({ agentId: "agt_b" });
    expect(await routes.prune()).toBe(0);
  });

  it("a route of a revoked or deleted agent marks it retired", async () => {
    const ownerId = newId("usr");
    await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
    const agentId = newId("agt");
    await database.db.agent.create({ data: { id: agentId, ownerId, name: "a", publicKey: `pk-${agentId}` } });
    const routes = new StickyRoutes(database.db, log, now);
    expect(await routes.agentRetired(agentId)).toBe(false);
    await database.db.agent.update({ where: { id: agentId }, data: { status: "paused" } });
    expect(await routes.agentRetired(agentId)).toBe(false);
    await database.db.agent.update({ where: { id: agentId }, data: { status: "revoked" } });
    expect(await routes.agentRetired(agentId)).toBe(true);
    expect(await routes.agentRetired("agt_never")).toBe(true);
  });
});
