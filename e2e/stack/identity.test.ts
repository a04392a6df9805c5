/**
 * One live connection per agent identity, through real processes: two Deno agents run from one copied data
 * folder. The copy is refused (close DUPLICATE_IDENTITY) and backs off instead of flapping with the live agent,
 * the live agent keeps serving a stream that outlasts the copy's first retry (15–30 s after its refusal),
 * the hub raises one risk flag that counts the refusals, and the owner's agent page data carries the warning —
 * with both copies on one gateway, and with the copies on two gateways sharing the database. A half-open old
 * session (its agent stopped with SIGSTOP) gives way to a new connection within the probe time.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloseCode, ControlKind, decodeMessage, encodePong, FrameType, importAgentPrivateKey, parseJson, welcome } from "@wellspring/protocol";
import { newId } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { DUPLICATE_AGENT_IDENTITY, type DuplicateEvidence } from "../../gateway/src/risk/duplicate_identity.ts";
import { connectFakeAgent, sendAuth } from "./fake_peers.ts";
import {
  copyAgentData,
  createTestDatabase,
  enrollAgent,
  fund,
  launchAgent,
  startAgentProc,
  startGatewayProc,
  TEST_USER_FUNDING_MICROS,
  type GatewayProc,
  type Proc,
  type TestDatabase,
} from "./harness.ts";

/** A live session on the gateway must answer the presence probe within this time (TUNNEL_PRESENCE_PROBE_TIMEOUT_MS). */
const PROBE_MS = 1_000;
/**
 * The stream on the live agent lasts longer than this: the copy's first retry (after [½, 1] × the agent's
 * DUPLICATE_RETRY_BASE_MS of 30 s) happens during it, and must not cut it.
 */
const REPLACED_CUT_MS = 30_000;
/** The window in which handshakes are counted after the copy starts. */
const WINDOW_MS = 10_000;
/** Handshakes (admitted + refused) of one identity allowed in the window: the live agent's and a refused copy's, with room for one retry. */
const HANDSHAKES_IN_WINDOW_MAX = 3;
/** The long stream: a chunk a second, for longer than REPLACED_CUT_MS. */
const STREAM_CHUNKS = 32;
const STREAM_CHUNK_DELAY_MS = 1_000;

/** Gateway two's presence time to live (its heartbeat timeout), far longer than the crash test takes. */
const CRASHED_PRESENCE_TTL_MS = 120_000;
/** After its gateway dies, the agent serves again through another gateway within this time. */
const RECONNECT_AFTER_CRASH_MS_MAX = 5_000;

const GATEWAY_ENV = {
  // A short heartbeat, so presence is renewed (and would run out) many times during the stream.
  TUNNEL_HEARTBEAT_INTERVAL_MS: "1000",
  TUNNEL_HEARTBEAT_TIMEOUT_MS: "3000",
  TUNNEL_PRESENCE_PROBE_TIMEOUT_MS: String(PROBE_MS),
  LOG_LEVEL: "info",
};

let database: TestDatabase;
let mock: MockProvider;
let one: GatewayProc;
let two: GatewayProc;
let ownerId: string;
let apiKey: string;
const procs: Proc[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  mock = await startMockProvider();
  one = await startGatewayProc(database.url, { ...GATEWAY_ENV, GATEWAY_ID: "gw_identity_one" });
  // A second gateway of the same hub: same hub id and tunnel key (so agents' pins hold), same database.
  two = await startGatewayProc(database.url, {
    ...GATEWAY_ENV,
    // Presence this gateway records lasts 2 minutes, so a crash of it leaves a fresh presence behind (last test).
    TUNNEL_HEARTBEAT_TIMEOUT_MS: String(CRASHED_PRESENCE_TTL_MS),
    GATEWAY_ID: "gw_identity_two",
    HUB_ID: one.hubId,
    TLS_CERT_FILE: join(one.dataDir, "tls/tunnel-cert.pem"),
    TLS_KEY_FILE: join(one.dataDir, "tls/tunnel-key.pem"),
  });
  procs.push(one, two);
  ownerId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  const userId = newId("usr");
  await database.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  apiKey = (await issueKey(database.db, userId, "identity")).secret;
  await fund(database.url, userId, TEST_USER_FUNDING_MICROS);
}, 120_000);

afterAll(async () => {
  for (const p of procs.reverse()) await p.stop();
  await mock?.close();
  await database?.drop();
  for (const d of [...dirs, one?.dataDir, two?.dataDir]) if (d) await rm(d, { recursive: true, force: true });
});

interface LogLine {
  t: string;
  event: string;
  agentId?: string;
  sessionId?: string;
}

function gatewayLines(gw: GatewayProc, agentId: string): LogLine[] {
  const out: LogLine[] = [];
  for (const l of gw.lines) {
    if (!l.startsWith("{")) continue;
    const line = JSON.parse(l) as LogLine;
    if (line.agentId === agentId) out.push(line);
  }
  return out;
}

/** Admitted and refused handshakes of an agent on these gateways, from `fromMs` to `toMs`. */
function handshakes(gateways: GatewayProc[], agentId: string, fromMs: number, toMs = Infinity): { ready: number; refused: number } {
  const lines = gateways.flatMap((gw) => gatewayLines(gw, agentId)).filter((l) => Date.parse(l.t) >= fromMs && Date.parse(l.t) <= toMs);
  return { ready: lines.filter((l) => l.event === "tunnel.ready").length, refused: lines.filter((l) => l.event === "tunnel.duplicate_refused").length };
}

async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > until) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitForModel(gw: GatewayProc, model: string): Promise<void> {
  await eventually(
    async () => {
      const res = await fetch(`${gw.apiOrigin}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` } });
      return ((await res.json()) as { data?: { id: string }[] }).data?.some((m) => m.id === model) ?? false;
    },
    Boolean,
    20_000,
  );
}

/** A streamed chat completion, read to its end: the text of its deltas and whether it reached [DONE]. */
async function stream(gw: GatewayProc, model: string, directive: string): Promise<{ text: string; done: boolean; ms: number }> {
  const started = Date.now();
  const res = await fetch(`${gw.apiOrigin}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model, stream: true, messages: [{ role: "user", content: `[mock ${directive}]` }] }),
  });
  expect(res.status).toBe(200);
  let raw = "";
  try {
    for await (const chunk of res.body! as unknown as AsyncIterable<Uint8Array>) raw += new TextDecoder().decode(chunk);
  } catch {
    // A cut stream ends here; what arrived is judged below.
  }
  let text = "";
  for (const line of raw.split("\n")) {
    if (!line.startsWith("data: {")) continue;
    text += (JSON.parse(line.slice(6)) as { choices?: { delta?: { content?: string } }[] }).choices?.[0]?.delta?.content ?? "";
  }
  return { text, done: raw.includes("data: [DONE]"), ms: Date.now() - started };
}

const expectedText = (chunks: number) => Array.from({ length: chunks }, (_, i) => `w${i} `).join("");

/** The portal's data layer for owners (type-checked with the portal's own tsconfig, so imported by path here). */
const OWNER_DATA_MODULE = "../../web/lib/data/owner.ts";
interface OwnerAgentRow {
  id: string;
  online: boolean;
  duplicate: { at: Date; address: string; attempts: number } | null;
}

/** What the owner's agent page shows, read through the portal's data layer as the signed-in owner. */
async function ownerAgents(): Promise<OwnerAgentRow[]> {
  process.env.DATABASE_URL = database.url;
  const owner = (await import(OWNER_DATA_MODULE)) as {
    listAgents(actor: { userId: string; email: string; name: null; isOwner: boolean; isAdmin: boolean }): Promise<OwnerAgentRow[]>;
  };
  return owner.listAgents({ userId: ownerId, email: `${ownerId}@owner.test`, name: null, isOwner: true, isAdmin: false });
}

/**
 * Runs a live agent on `one` and a copy of its data folder against `copyGateway`, with a stream longer than
 * REPLACED_CUT_MS on the live agent, and checks everything the hub and the owner see.
 */
async function duplicateScenario(model: string, copyGateway: GatewayProc): Promise<void> {
  const enrolled = await enrollAgent(database.db, one, ownerId, { models: { openai: [model], anthropic: ["claude-haiku-4-5"] } });
  dirs.push(enrolled.dataDir);
  const live = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
  procs.push(live);
  await waitForModel(one, model);
  const liveSession = (await database.db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } })).connectedSession;
  expect(liveSession).toMatch(/^ses_/);

  // The owner copies the data folder to another machine and starts it there.
  const copyDir = await copyAgentData(enrolled.dataDir, copyGateway === one ? undefined : copyGateway.agentOrigin);
  dirs.push(copyDir);
  const copyStartedAt = Date.now();
  const copy = launchAgent(copyDir, mock.origin);
  procs.push(copy);
  // The copy's first handshake has happened once it says how it ended (refused, or — the hole — connected).
  await copy.waitForLine(/WELLSPRING_AGENT_READY|"event":"tunnel.duplicate_identity"/, 30_000);

  // A stream on the live agent, outlasting the copy's first retry, while the copy keeps trying.
  const s = await stream(one, model, `chunks=${STREAM_CHUNKS} delay_ms=${STREAM_CHUNK_DELAY_MS}`);
  expect(s.text).toBe(expectedText(STREAM_CHUNKS));
  expect(s.done).toBe(true);
  expect(s.ms).toBeGreaterThan(REPLACED_CUT_MS);
  // The copy was refused, and told its owner why.
  expect(copy.lines.some((l) => /"event":"tunnel.duplicate_identity".*another agent is running with this identity/.test(l))).toBe(true);

  // No flapping: in the window after the copy started, the live agent's one handshake and the copy's refusals.
  const gateways = [one, two];
  const inWindow = handshakes(gateways, enrolled.agentId, copyStartedAt, copyStartedAt + WINDOW_MS);
  expect(inWindow.ready + inWindow.refused).toBeLessThanOrEqual(HANDSHAKES_IN_WINDOW_MAX);
  expect(inWindow.refused).toBeGreaterThanOrEqual(1);
  const overall = handshakes(gateways, enrolled.agentId, 0);
  expect(overall.ready).toBe(1); // the live agent never had to reconnect
  expect(copy.lines.some((l) => l.includes("WELLSPRING_AGENT_READY"))).toBe(false);
  expect(copy.child.exitCode).toBeNull(); // the copy waits and retries; it does not exit

  // The live agent still holds the identity and serves.
  expect((await database.db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } })).connectedSession).toBe(liveSession);
  const after = await stream(one, model, "chunks=3");
  expect(after.text).toBe(expectedText(3));

  // One open flag for the agent, counting every refusal, with the sessions and addresses seen — no secrets.
  const { flags, refusals } = await eventually(
    async () => ({
      flags: await database.db.riskFlag.findMany({ where: { subject: `agent:${enrolled.agentId}` } }),
      refusals: handshakes(gateways, enrolled.agentId, 0).refused,
    }),
    (r) => r.flags.length === 1 && r.flags[0]!.raisedCount === r.refusals,
    5_000,
  );
  expect(flags).toHaveLength(1);
  const flag = flags[0]!;
  expect(flag).toMatchObject({ kind: DUPLICATE_AGENT_IDENTITY, status: "open", severity: 2, raisedCount: refusals });
  const evidence = flag.evidence as DuplicateEvidence;
  expect(evidence.agentId).toBe(enrolled.agentId);
  expect(evidence.live).toEqual({ sessionId: liveSession, gatewayId: "gw_identity_one", address: "127.0.0.1" });
  expect(evidence.lastRefused.gatewayId).toBe(copyGateway === one ? "gw_identity_one" : "gw_identity_two");
  expect(evidence.lastRefused.address).toBe("127.0.0.1");
  expect(evidence.refusedSessions).toHaveLength(refusals);
  expect(evidence.refusedSessions).not.toContain(liveSession);
  expect(evidence.addresses).toEqual(["127.0.0.1"]);
  const json = JSON.stringify(evidence);
  for (const secret of ["sk-test-owner-openai-key-123", "sk-ant-test-owner-key", "PRIVATE"]) expect(json).not.toContain(secret);

  // The owner's agent page data carries the warning: when, from where, how often.
  const row = (await ownerAgents()).find((a) => a.id === enrolled.agentId)!;
  expect(row.online).toBe(true);
  expect(row.duplicate?.address).toBe("127.0.0.1");
  expect(row.duplicate!.at.getTime()).toBeGreaterThanOrEqual(flag.lastRaisedAt.getTime());
  expect(row.duplicate!.attempts).toBeGreaterThanOrEqual(refusals);
}

describe("two agents with one identity", () => {
  // Both scenarios run at once (different agents), so the file takes one long stream's time, not two.
  it.concurrent(
    "on one gateway: the copy is refused and backs off, the live agent's long stream is not cut, one flag, the owner is told",
    async () => {
      await duplicateScenario("gpt-4o", one);
    },
    120_000,
  );

  it.concurrent(
    "on two gateways sharing the database: the same",
    async () => {
      await duplicateScenario("gpt-4o-mini", two);
    },
    120_000,
  );
});

describe("a half-open old session", () => {
  it("keeps the identity while it answers the probe, and gives way within the probe time once it cannot", async () => {
    const enrolled = await enrollAgent(database.db, one, ownerId, { models: { openai: ["o4-mini"], anthropic: ["claude-sonnet-4-5"] } });
    dirs.push(enrolled.dataDir);
    const old = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
    procs.push(old);
    const privateKey = await importAgentPrivateKey(new Uint8Array(await readFile(join(enrolled.dataDir, "agent-key.pk8"))));
    const identity = { id: enrolled.agentId, privateKey };
    const tunnelUrl = `${one.agentOrigin.replace("https:", "wss:")}/agent/v1/tunnel`;

    // The old agent answers the probe: a new connection with its key is refused at once.
    const refusedStarted = Date.now();
    const refused = await connectFakeAgent(tunnelUrl);
    await sendAuth(refused, identity);
    const [code] = await refused.closed;
    expect(code).toBe(CloseCode.DUPLICATE_IDENTITY);
    expect(Date.now() - refusedStarted).toBeLessThan(PROBE_MS);

    // The old agent's process stops (its connection stays open, silent): the next connection is admitted
    // after one unanswered probe.
    process.kill(-old.child.pid!, "SIGSTOP");
    try {
      const fresh = await connectFakeAgent(tunnelUrl);
      fresh.ws.on("message", (data: Buffer) => {
        for (const r of decodeMessage(new Uint8Array(data))) if (r.ok && r.frame.type === FrameType.PING) fresh.ws.send(encodePong(r.frame.data));
      });
      const authAt = Date.now();
      await sendAuth(fresh, identity);
      const w = parseJson(welcome, await fresh.waitForControl(ControlKind.WELCOME, PROBE_MS + 5_000));
      const admittedMs = Date.now() - authAt;
      expect(w.agentId).toBe(enrolled.agentId);
      expect(admittedMs).toBeGreaterThanOrEqual(PROBE_MS);
      expect(admittedMs).toBeLessThan(PROBE_MS + 2_000);
      expect((await database.db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } })).connectedSession).toBe(w.sessionId);
      await one.waitForLine(new RegExp(`"event":"tunnel.presence_probe_unanswered".*"agentId":"${enrolled.agentId}"`), 2_000);

      // The old agent resumes: the identity is taken by a live session, so it is refused and backs off.
      process.kill(-old.child.pid!, "SIGCONT");
      await old.waitForLine(/"event":"tunnel.duplicate_identity"/, 20_000);
      expect(old.child.exitCode).toBeNull();
      expect((await database.db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } })).connectedSession).toBe(w.sessionId);
      fresh.ws.close();
    } finally {
      process.kill(-old.child.pid!, "SIGCONT");
    }
  }, 90_000);
});

/** A TCP forwarder standing in for a load balancer in front of the gateways' tunnel listeners. */
async function startBalancer(targetPort: number): Promise<{ origin: string; target: number; close(): Promise<void> }> {
  const state = { target: targetPort };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(state.target, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    origin: `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    get target() {
      return state.target;
    },
    set target(port: number) {
      state.target = port;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe("a gateway that dies", () => {
  it("leaves no presence in the way: its agents serve again through another gateway at once", async () => {
    const balancer = await startBalancer(Number(new URL(two.agentOrigin).port));
    try {
      const enrolled = await enrollAgent(database.db, one, ownerId, { models: { openai: ["gpt-4.1-mini"], anthropic: ["claude-haiku-4-5"] } });
      dirs.push(enrolled.dataDir);
      const identity = JSON.parse(await readFile(join(enrolled.dataDir, "agent.json"), "utf8")) as Record<string, unknown>;
      await writeFile(join(enrolled.dataDir, "agent.json"), JSON.stringify({ ...identity, hubUrl: balancer.origin }));
      const agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
      procs.push(agent);
      expect((await database.db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } })).connectedGateway).toBe("gw_identity_two");

      // Gateway two is killed; the balancer sends new connections to gateway one. The agent's presence on two
      // would last CRASHED_PRESENCE_TTL_MS, but the agent names its lost session, so one admits it at once.
      const killedAt = Date.now();
      await two.stop("SIGKILL");
      balancer.target = Number(new URL(one.agentOrigin).port);
      await waitForModel(one, "gpt-4.1-mini");
      expect(Date.now() - killedAt).toBeLessThan(RECONNECT_AFTER_CRASH_MS_MAX);
      const row = await database.db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } });
      expect(row.connectedGateway).toBe("gw_identity_one");
      expect(handshakes([one], enrolled.agentId, killedAt)).toEqual({ ready: 1, refused: 0 });
      expect(agent.lines.some((l) => l.includes("tunnel.duplicate_identity"))).toBe(false);
      const s = await stream(one, "gpt-4.1-mini", "chunks=2");
      expect(s.text).toBe(expectedText(2));
    } finally {
      await balancer.close();
    }
  }, 90_000);
});
