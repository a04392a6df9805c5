/** The gateway directory against a real PostgreSQL: which gateways are live, and which of their agents are offered. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { claimPresence } from "../tunnel/presence.ts";
import { announcePeer, readPeers, withdrawPeer } from "./directory.ts";

let database: TestDatabase;
let ownerId: string;
beforeAll(async () => {
  database = await createTestDatabase();
  ownerId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@o.test`, isOwner: true } });
}, 60_000);
afterAll(async () => {
  await database?.drop();
});

const endpoint = (gatewayId: string) => ({ gatewayId, url: `wss://127.0.0.1:1/${gatewayId}`, pin: "sha256/x", secret: `secret-${gatewayId}` });

async function agentOn(gatewayId: string, ttlMs: number, models: string[], contextWindows: Record<string, number> = {}): Promise<string> {
  const id = newId("agt");
  await database.db.agent.create({ data: { id, ownerId, name: id, publicKey: newId("hub"), models, contextWindows, tier: "S" } });
  await claimPresence(database.db, { agentId: id, sessionId: newId("ses"), gatewayId, address: "127.0.0.1", ttlMs, expectHolder: null, requireExpired: false });
  return id;
}

describe("gateway directory", () => {
  it("offers the live agents of the other live gateways, never its own or a dead gateway's", async () => {
    await announcePeer(database.db, endpoint("gw_me"));
    await announcePeer(database.db, endpoint("gw_b"));
    await announcePeer(database.db, endpoint("gw_dead"), 0);
    const mine = await agentOn("gw_me", 60_000, ["openai:gpt-4o"]);
    const onB = await agentOn("gw_b", 60_000, ["anthropic:claude-haiku-4-5"], { "anthropic:claude-haiku-4-5": 200_000 });
    await agentOn("gw_b", 0, ["openai:gpt-4o"]); // its presence ran out
    await agentOn("gw_dead", 60_000, ["openai:gpt-4o"]);
    const { peers, agents } = await readPeers(database.db, "gw_me");
    expect(peers).toEqual([endpoint("gw_b")]);
    expect(agents).toEqual([
      {
        agentId: onB,
        gatewayId: "gw_b",
        ownerId,
        status: "active",
        tier: "S",
        discountLane: false,
        createdAt: expect.any(Date), // its probation counts from here
        rateMode: "auto",
        rpmLimit: null,
        tpmLimit: null,
        concurrencyLimit: null,
        models: ["anthropic:claude-haiku-4-5"],
        contextWindows: { "anthropic:claude-haiku-4-5": 200_000 },
      },
    ]);
    expect(agents.map((a) => a.agentId)).not.toContain(mine);
    await withdrawPeer(database.db, "gw_b");
    expect(await readPeers(database.db, "gw_me")).toEqual({ peers: [], agents: [] });
  });
});
