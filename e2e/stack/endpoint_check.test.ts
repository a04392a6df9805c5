/**
 * Official endpoints, checked by address, through real processes: a gateway, the mock provider and agents
 * started with the stock launcher. This machine has no internet, so each agent is given what its provider
 * hosts resolve to (`--dev-resolve`, the injected resolver; calls that pass the check then go to the mock
 * through `--dev-upstream`). An agent whose `api.openai.com` resolves to a relay address refuses the call with
 * RESET ENDPOINT_FORBIDDEN before the provider sees a byte, reports it, and the hub raises a flag the admin lists
 * and the owner's agent page shows; its Anthropic host, resolving inside Anthropic's network, keeps serving.
 * A second agent whose host resolves inside OpenAI's network (Cloudflare) then serves every OpenAI call.
 */
import { rm } from "node:fs/promises";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { ControlKind, encodeControl, encodePing, FrameType, jsonBytes, type EndpointReport } from "@wellspring/protocol";
import { ENDPOINT_FORBIDDEN, ENDPOINT_REPORTS_PER_AGENT_MAX, type EndpointEvidence } from "../../gateway/src/risk/endpoint_forbidden.ts";
import { connectFakeAgent, registerFakeAgent, sendAuth } from "./fake_peers.ts";
import {
  adminFetch,
  createTestDatabase,
  enrollAgent,
  fund,
  startAgentLauncher,
  startGatewayProc,
  TEST_USER_FUNDING_MICROS,
  waitFor,
  type GatewayProc,
  type Proc,
  type TestDatabase,
} from "./harness.ts";

/** A documentation address (RFC 5737): no provider's network, what a hosts-file relay would look like. */
const RELAY_ADDRESS = "203.0.113.7";
/** A Cloudflare edge address (AS13335), where api.openai.com is served. */
const OPENAI_ADDRESS = "104.18.6.192";
/** api.anthropic.com's network (AS399358). */
const ANTHROPIC_ADDRESS = "160.79.104.10";
/** Calls made once the official agent is up: each must be served, whichever agent the hub tries first. */
const CALLS_AFTER_FAILOVER = 4;

let database: TestDatabase;
let mock: MockProvider;
let gateway: GatewayProc;
let ownerId: string;
let apiKey: string;
let relayAgentId: string;
const procs: Proc[] = [];
const dirs: string[] = [];

async function startAgent(resolve: Record<string, string[]>): Promise<string> {
  const { dataDir, agentId } = await enrollAgent(database.db, gateway, ownerId);
  dirs.push(dataDir);
  const proc = startAgentLauncher(dataDir, { devUpstream: mock.origin, devResolve: resolve });
  procs.push(proc);
  await proc.waitForLine(/WELLSPRING_AGENT_READY/, 60_000);
  return agentId;
}

async function routedAgents(model: string): Promise<number> {
  const res = await adminFetch(gateway.adminOrigin, "/admin/v1/agents");
  const body = (await res.json()) as { data: { id: string; connected: boolean; models: { model: string }[] }[] };
  return body.data.filter((a) => a.connected && a.models.some((m) => m.model === model)).length;
}

interface FlagRow {
  kind: string;
  subject: string;
  severity: number;
  evidence: EndpointEvidence;
  raised_count: number;
}

async function endpointFlags(): Promise<FlagRow[]> {
  const res = await adminFetch(gateway.adminOrigin, "/admin/v1/risk-flags");
  return ((await res.json()) as { data: FlagRow[] }).data.filter((f) => f.kind === ENDPOINT_FORBIDDEN);
}

const openai = () => new OpenAI({ baseURL: `${gateway.apiOrigin}/v1`, apiKey, maxRetries: 0 });
const chatCalls = () => mock.requests.filter((r) => r.path.startsWith("/v1/chat/completions")).length;

beforeAll(async () => {
  database = await createTestDatabase();
  mock = await startMockProvider();
  gateway = await startGatewayProc(database.url);
  ownerId = newId("usr");
  const userId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  await database.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  apiKey = (await issueKey(database.db, userId, "endpoint test")).secret;
  await fund(database.url, userId, TEST_USER_FUNDING_MICROS);
  relayAgentId = await startAgent({ "api.openai.com": [RELAY_ADDRESS], "api.anthropic.com": [ANTHROPIC_ADDRESS] });
  await waitFor(async () => (await routedAgents("gpt-4o-mini")) === 1, 10_000);
}, 120_000);

afterAll(async () => {
  for (const p of procs) await p.stop();
  await gateway?.stop();
  await mock?.close();
  await database?.drop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** The portal's data layer for owners (type-checked with the portal's own tsconfig, so imported by path here). */
const OWNER_DATA_MODULE = "../../web/lib/data/owner.ts";
interface OwnerAgentRow {
  id: string;
  endpoint: { at: Date; host: string; outside: string[]; reports: number } | null;
}

async function ownerAgents(): Promise<OwnerAgentRow[]> {
  process.env.DATABASE_URL = database.url;
  const owner = (await import(OWNER_DATA_MODULE)) as {
    listAgents(actor: { userId: string; email: string; name: null; isOwner: boolean; isAdmin: boolean }): Promise<OwnerAgentRow[]>;
  };
  return owner.listAgents({ userId: ownerId, email: `${ownerId}@owner.test`, name: null, isOwner: true, isAdmin: false });
}

describe("official endpoints, checked by address", () => {
  it("refuses a call whose provider host resolves to a relay, flags the agent and shows the owner why", async () => {
    const error = await openai()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    // Refused before the call: the provider never saw it.
    expect(chatCalls()).toBe(0);

    await waitFor(async () => (await endpointFlags()).length === 1, 10_000);
    const [flag] = await endpointFlags();
    expect(flag!.subject).toBe(`agent:${relayAgentId}`);
    expect(flag!.severity).toBe(3);
    expect(flag!.evidence.outside).toEqual([RELAY_ADDRESS]);
    expect(flag!.evidence.hosts).toEqual(["openai api.openai.com"]);
    expect(flag!.evidence.last).toMatchObject({ provider: "openai", host: "api.openai.com", addresses: [RELAY_ADDRESS], tunnelAddress: "127.0.0.1" });

    const row = (await ownerAgents()).find((a) => a.id === relayAgentId);
    expect(row?.endpoint).toMatchObject({ host: "api.openai.com", outside: [RELAY_ADDRESS], reports: 1 });
  });

  it("keeps serving the provider whose host resolves inside its network", async () => {
    const anthropic = new Anthropic({ baseURL: gateway.apiOrigin, apiKey, maxRetries: 0 });
    const before = mock.requests.filter((r) => r.path.startsWith("/v1/messages")).length;
    const msg = await anthropic.messages.create({ model: "claude-haiku-4-5", max_tokens: 16, messages: [{ role: "user", content: "hello" }] });
    expect(msg.content.length).toBeGreaterThan(0);
    expect(mock.requests.filter((r) => r.path.startsWith("/v1/messages")).length).toBe(before + 1);
  });

  it("sends the call to another agent whose host resolves inside the provider's network; the relay is reported once", async () => {
    await startAgent({ "api.openai.com": [OPENAI_ADDRESS], "api.anthropic.com": [ANTHROPIC_ADDRESS] });
    await waitFor(async () => (await routedAgents("gpt-4o-mini")) === 2, 10_000);
    for (let i = 0; i < CALLS_AFTER_FAILOVER; i++) {
      const res = await openai().chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `call ${i}` }] });
      expect(res.choices[0]?.message.content).toBeTruthy();
    }
    expect(chatCalls()).toBe(CALLS_AFTER_FAILOVER);
    // The relay agent's verdict is kept for its cache period: a refusal in it is not reported again.
    const [flag] = await endpointFlags();
    expect(flag!.raised_count).toBe(1);
  });

  it("takes at most the named number of reports per agent per window from an agent that floods them", async () => {
    // A modified agent: a report per frame, 50 in one burst (a stock agent sends one per host per 10 minutes).
    const FLOOD = 50;
    const fake = await registerFakeAgent(database.db, ownerId);
    const s = await connectFakeAgent(`${gateway.agentOrigin.replace("https:", "wss:")}/agent/v1/tunnel`);
    try {
      await sendAuth(s, fake);
      await s.waitForControl(ControlKind.WELCOME);
      const report: EndpointReport = {
        requestId: "req_flood",
        provider: "openai",
        host: "api.openai.com",
        addresses: [RELAY_ADDRESS],
        outside: [RELAY_ADDRESS],
      };
      for (let i = 0; i < FLOOD; i++) s.ws.send(encodeControl(ControlKind.ENDPOINT_REPORT, jsonBytes(report)));
      // The hub handles a connection's frames in order: its PONG comes after every report was admitted or dropped.
      const marker = new Uint8Array([7, 7, 7, 7, 7, 7, 7, 7]);
      s.ws.send(encodePing(marker));
      await waitFor(() => s.frames.some((r) => r.ok && r.frame.type === FrameType.PONG && r.frame.data[0] === 7), 10_000);
      await gateway.waitForLine(new RegExp(`tunnel\\.endpoint_reports_dropped.*${fake.id}`), 10_000);
      const flagOf = async () => (await endpointFlags()).find((f) => f.subject === `agent:${fake.id}`);
      await waitFor(async () => ((await flagOf())?.raised_count ?? 0) >= ENDPOINT_REPORTS_PER_AGENT_MAX, 10_000);
      expect((await flagOf())!.raised_count).toBe(ENDPOINT_REPORTS_PER_AGENT_MAX);
      expect(gateway.lines.filter((l) => l.includes("endpoint_reports_dropped") && l.includes(fake.id)).length).toBe(1);
    } finally {
      s.ws.close();
    }
  });
});
