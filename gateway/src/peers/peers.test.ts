/**
 * Two gateways' `Peers` in one process against a real PostgreSQL: each announces itself, reads the other, dials
 * a link to it and offers its agents to routing; a gateway that withdraws is dropped.
 */
import https from "node:https";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { newId } from "@wellspring/db";
import { createTestDatabase, waitFor, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { createLogger } from "../log.ts";
import type { AgentConnection } from "../tunnel/agent_connection.ts";
import { AgentRegistry } from "../tunnel/registry.ts";
import { claimPresence } from "../tunnel/presence.ts";
import { generateSelfSigned } from "../tls.ts";
import { Peers } from "./mod.ts";

const log = createLogger({ proc: "test" }, "error", () => {});
const SETTINGS = { streamWindowBytes: 64 * 1024, connectionWindowBytes: 1024 * 1024, concurrentStreamsMax: 16 };

let database: TestDatabase;
let dir: string;
let server: https.Server;
let peersA: Peers;
let peersB: Peers;
let agentId: string;

beforeAll(async () => {
  database = await createTestDatabase();
  dir = await mkdtemp(join(tmpdir(), "ws-peers-"));
  const tls = await generateSelfSigned(dir);
  const ownerId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@o.test`, isOwner: true } });
  agentId = newId("agt");
  await database.db.agent.create({
    data: {
      id: agentId,
      ownerId,
      name: "b",
      publicKey: newId("hub"),
      models: ["openai:gpt-4o", "openai:gpt-4o-mini"],
      contextWindows: { "openai:gpt-4o": 8_000, "openai:gpt-4o-mini": "x" },
    },
  });
  await claimPresence(database.db, {
    agentId,
    sessionId: newId("ses"),
    gatewayId: "gw_b",
    address: "127.0.0.1",
    ttlMs: 60_000,
    expectHolder: null,
    requireExpired: false,
  });
  const registryB = new AgentRegistry();
  const fake = { agentId, routable: true, inFlight: 0, capacity: 4 } as unknown as AgentConnection;
  registryB.get = (id: string) => (id === agentId ? fake : undefined);
  peersB = new Peers({ db: database.db, gatewayId: "gw_b", pin: tls.pin, settings: SETTINGS, registry: registryB, log });
  server = https.createServer({ cert: tls.cert, key: tls.key });
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req, socket, head) => peersB.upgrade(wss, req, socket, head));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  await peersB.start(`https://127.0.0.1:${(server.address() as AddressInfo).port}`);
  peersA = new Peers({ db: database.db, gatewayId: "gw_a", pin: tls.pin, settings: SETTINGS, registry: new AgentRegistry(), log });
  await peersA.start("https://127.0.0.1:1");
}, 60_000);

afterAll(async () => {
  await peersA?.close();
  await peersB?.close();
  server?.closeAllConnections();
  server?.close();
  await rm(dir, { recursive: true, force: true });
  await database?.drop();
});

describe("Peers", () => {
  it("offers the other gateway's agent once the link to it is up, and drops it when that gateway withdraws", async () => {
    await waitFor(() => peersA.serving("openai", "gpt-4o").some((a) => a.routable));
    const [remote] = peersA.serving("openai", "gpt-4o");
    expect(remote).toMatchObject({ agentId, remote: true, routable: true, capacity: SETTINGS.concurrentStreamsMax });
    expect(peersA.models("openai")).toEqual(["gpt-4o", "gpt-4o-mini"]);
    // The context windows its gateway wrote with its inventory (a value that is no window counts as unknown).
    expect(remote!.contextTokens("openai", "gpt-4o")).toBe(8_000);
    expect(remote!.contextTokens("openai", "gpt-4o-mini")).toBeNull();
    // Gateway B does not see its own agent as remote.
    expect(peersB.serving("openai", "gpt-4o")).toEqual([]);
    await peersB.close();
    await waitFor(() => peersA.serving("openai", "gpt-4o").length === 0);
  });
});
