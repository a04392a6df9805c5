/**
 * A gateway link end to end in one process: the forwarding end (`PeerLink`) dials a real TLS WebSocket server
 * whose holding end (`PeerSession`) serves streams on a scripted agent connection. Bytes arrive exactly, a slow
 * client at the forwarding end holds the agent back through both hops, an abort reaches the agent, an agent not
 * held there or a lost link is a reset the request path fails over on, and a key other than the pinned one is
 * refused before anything is sent.
 */
import https from "node:https";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { decodeFrame, FrameType, ResetCode, SendWindow, type RequestHead, type Settings } from "@wellspring/protocol";
import { waitFor } from "../../../e2e/stack/harness.ts";
import { createLogger } from "../log.ts";
import { HubStream, type StreamSink } from "../tunnel/hub_stream.ts";
import type { AgentConnection } from "../tunnel/agent_connection.ts";
import { AgentRegistry } from "../tunnel/registry.ts";
import { generateSelfSigned, type TlsIdentity } from "../tls.ts";
import { PEER_PATH, PeerLink } from "./link.ts";
import { presentsSecret } from "./mod.ts";
import { PeerSession } from "./session.ts";

const log = createLogger({ proc: "test" }, "error", () => {});
const WINDOW = 64 * 1024;
const SETTINGS: Settings = { streamWindowBytes: WINDOW, connectionWindowBytes: 1024 * 1024, concurrentStreamsMax: 16 };
const SECRET = "s".repeat(43);
const HEAD: RequestHead = {
  requestId: "req_1",
  method: "POST",
  path: "/v1/chat/completions",
  api: "openai",
  model: "gpt-4o-mini",
  headers: [],
  bodyBytes: null,
  estimatedTokens: null,
};

/** The agent's side of its one stream, scripted: it answers within the credit the holding gateway gives it. */
class ScriptedAgent {
  readonly agentId = "agt_far";
  readonly remote = false;
  readonly rateSaturatedUntilMs = 0;
  routable = true;
  isClosed = false;
  capacity = 4;
  inFlight = 0;
  stream: HubStream | null = null;
  head: RequestHead | null = null;
  readonly body: Buffer[] = [];
  resets: { code: number; at: number }[] = [];
  ended = false;
  credit = new SendWindow(WINDOW);
  sent = 0;

  openStream(head: RequestHead, sink: StreamSink): HubStream {
    this.head = head;
    this.credit = new SendWindow(WINDOW);
    this.stream = new HubStream(
      1,
      { send: (f) => this.#frame(f), connectionSendWindow: new SendWindow(1 << 30), forget: () => undefined },
      sink,
      WINDOW,
      WINDOW,
    );
    return this.stream;
  }

  sendSettlement(): void {}

  #frame(bytes: Uint8Array): void {
    const r = decodeFrame(bytes);
    if (!r.ok) throw new Error("bad frame");
    const f = r.frame;
    if (f.type === FrameType.DATA) {
      this.body.push(Buffer.from(f.payload));
      this.stream!.onWindow(f.payload.length);
    } else if (f.type === FrameType.WINDOW) this.credit.grant(f.increment);
    else if (f.type === FrameType.RESET) this.resets.push({ code: f.code, at: performance.now() });
    else if (f.type === FrameType.END) this.ended = true;
  }

  /** Sends `bytes` as the response body, 16 KiB at a time, each only within credit; then END. */
  async respond(bytes: Uint8Array): Promise<void> {
    const s = this.stream!;
    s.onResponse({ status: 200, headers: [["content-type", "text/event-stream"]] });
    let offset = 0;
    while (offset < bytes.length) {
      await this.credit.whenAvailable();
      const n = this.credit.take(Math.min(16 * 1024, bytes.length - offset));
      expect(s.recvWindow.receive(n)).toBe(true);
      s.onData(bytes.subarray(offset, offset + n));
      offset += n;
      this.sent = offset;
    }
    s.onEnd(null);
  }
}

let tls: TlsIdentity;
let dir: string;
let server: https.Server;
let url: string;
let agent: ScriptedAgent;
const sessions: PeerSession[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ws-peer-"));
  tls = await generateSelfSigned(dir);
  const registry = new AgentRegistry();
  agent = new ScriptedAgent();
  registry.get = (id: string) => (id === agent.agentId ? (agent as unknown as AgentConnection) : undefined);
  server = https.createServer({ cert: tls.cert, key: tls.key });
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req, socket, head) => {
    if (!presentsSecret(req, SECRET)) {
      socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => sessions.push(new PeerSession(ws, SETTINGS, registry, "gw_a", log)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `wss://127.0.0.1:${(server.address() as AddressInfo).port}${PEER_PATH}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

async function connectedLink(over: Partial<{ pin: string; secret: string }> = {}): Promise<PeerLink> {
  const link = new PeerLink({ gatewayId: "gw_b", url, pin: over.pin ?? tls.pin, secret: over.secret ?? SECRET }, "gw_a", SETTINGS, log);
  await link.connect();
  return link;
}

/** A sink that keeps what it gets and gives credit back only when told to (a client reading at its own pace). */
function collector() {
  const chunks: Buffer[] = [];
  let stream: HubStream | null = null;
  let pending = 0;
  const got = { status: 0, ended: false, reset: null as null | { code: number; cause: string }, chunks, taken: 0 };
  const sink: StreamSink = {
    response: (h) => (got.status = h.status),
    data: (c) => {
      chunks.push(Buffer.from(c));
      pending += c.length;
    },
    end: () => (got.ended = true),
    reset: (code, _reason, cause) => (got.reset = { code, cause }),
  };
  return {
    got,
    sink,
    bind: (s: HubStream) => (stream = s),
    /** The client reads everything received so far. */
    read: () => {
      stream!.consumed(pending);
      got.taken += pending;
      pending = 0;
    },
  };
}

describe("gateway link", () => {
  it("carries a request body and a 2 MB response byte for byte, holding the agent to what the client read", async () => {
    const link = await connectedLink();
    expect(link.ready).toBe(true);
    const c = collector();
    const stream = link.openStream(agent.agentId, HEAD, c.sink);
    c.bind(stream);
    const requestBody = Buffer.alloc(300_000, 7);
    await stream.sendData(requestBody);
    stream.end();
    await waitFor(() => agent.ended);
    expect(agent.head).toEqual(HEAD);
    expect(Buffer.concat(agent.body).equals(requestBody)).toBe(true);

    const response = Buffer.from(Array.from({ length: 2 * 1024 * 1024 }, (_, i) => i % 251));
    const responding = agent.respond(response);
    // The client reads nothing: the agent stops within both hops' windows.
    await new Promise((r) => setTimeout(r, 100));
    expect(agent.sent).toBeLessThanOrEqual(2 * WINDOW);
    while (!c.got.ended) {
      c.read();
      await new Promise((r) => setTimeout(r, 1));
      expect(agent.sent - c.got.taken).toBeLessThanOrEqual(2 * WINDOW + 16 * 1024);
    }
    await responding;
    const received = Buffer.concat(c.got.chunks);
    expect(createHash("sha256").update(received).digest("hex")).toBe(createHash("sha256").update(response).digest("hex"));
    link.close();
  });

  it("an abort at the forwarding end reaches the agent at once", async () => {
    const link = await connectedLink();
    const c = collector();
    const stream = link.openStream(agent.agentId, HEAD, c.sink);
    agent.resets = [];
    await waitFor(() => agent.stream !== null && agent.head !== null);
    const at = performance.now();
    stream.reset(ResetCode.CANCEL, "client gone");
    await waitFor(() => agent.resets.length > 0);
    expect(agent.resets[0]!.code).toBe(ResetCode.CANCEL);
    expect(agent.resets[0]!.at - at).toBeLessThan(50);
    link.close();
  });

  it("an agent not held there is AGENT_NOT_HERE; a lost link resets its streams as a lost connection", async () => {
    const link = await connectedLink();
    const away = collector();
    link.openStream("agt_elsewhere", HEAD, away.sink);
    await waitFor(() => away.got.reset !== null);
    expect(away.got.reset).toEqual({ code: ResetCode.AGENT_NOT_HERE, cause: "agent" });

    const c = collector();
    link.openStream(agent.agentId, HEAD, c.sink);
    await waitFor(() => sessions.length > 0);
    for (const s of sessions) s.close(4030, "test closes the holding end");
    await waitFor(() => c.got.reset !== null);
    expect(c.got.reset!.cause).toBe("connection");
    link.close();
  });

  it("refuses a gateway presenting another key than the one it announced, or a wrong secret", async () => {
    const other = await generateSelfSigned(join(dir, "other"));
    const wrongPin = await connectedLink({ pin: other.pin });
    expect(wrongPin.ready).toBe(false);
    const wrongSecret = await connectedLink({ secret: "x".repeat(43) });
    expect(wrongSecret.ready).toBe(false);
  });
});
