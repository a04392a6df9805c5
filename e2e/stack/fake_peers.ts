/** Hand-driven tunnel peers for handshake and fuzz tests: a fake agent (Node ws client) and a fake hub. */
import https from "node:https";
import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";
import {
  ControlKind,
  decodeFrame,
  decodeMessage,
  encodeControl,
  encodeData,
  encodeEnd,
  encodeOpen,
  encodePong,
  FrameType,
  generateAgentKeyPair,
  jsonBytes,
  parseJson,
  challenge as challengeSchema,
  PROTOCOL_VERSION,
  randomBytes,
  signAuth,
  toBase64Url,
  type Challenge,
  type Frame,
  type RequestHead,
} from "@wellspring/protocol";
import { newId, type Db } from "@wellspring/db";
import { generateSelfSigned } from "../../gateway/src/tls.ts";

export const SETTINGS = { streamWindowBytes: 262_144, connectionWindowBytes: 16_777_216, concurrentStreamsMax: 64 };

export async function registerFakeAgent(db: Db, ownerId: string, status: "active" | "revoked" | "suspended" = "active") {
  const { pair } = await generateAgentKeyPair();
  const id = newId("agt");
  await db.agent.create({ data: { id, ownerId, name: "fake", publicKey: pair.publicKey, status } });
  return { id, ...pair };
}

export interface FakeAgentSession {
  ws: WebSocket;
  challenge: Challenge;
  /** Resolves with [code, reason] when the hub closes the socket. */
  closed: Promise<[number, string]>;
  /** Frames the hub sent after the challenge. */
  frames: ReturnType<typeof decodeFrame>[];
  waitForControl(kind: number, timeoutMs?: number): Promise<Uint8Array>;
}

export async function connectFakeAgent(tunnelUrl: string): Promise<FakeAgentSession> {
  const ws = new WebSocket(tunnelUrl, { rejectUnauthorized: false, perMessageDeflate: false });
  const frames: ReturnType<typeof decodeFrame>[] = [];
  const listeners = new Set<() => void>();
  ws.on("message", (data: Buffer) => {
    frames.push(...decodeMessage(new Uint8Array(data)));
    for (const l of [...listeners]) l();
  });
  const closed = new Promise<[number, string]>((resolve) => ws.on("close", (code, reason) => resolve([code, reason.toString()])));
  ws.on("error", () => {});
  const waitForControl = (kind: number, timeoutMs = 5000) =>
    new Promise<Uint8Array>((resolve, reject) => {
      const check = () => {
        for (const r of frames) {
          if (r.ok && r.frame.type === FrameType.CONTROL && r.frame.kind === kind) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(r.frame.body);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`no control kind ${kind} within ${timeoutMs} ms`));
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  const body = await waitForControl(ControlKind.CHALLENGE);
  return { ws, challenge: parseJson(challengeSchema, body), closed, frames, waitForControl };
}

export async function sendAuth(
  s: FakeAgentSession,
  agent: { id: string; privateKey: CryptoKey },
  overrides: {
    hubId?: string;
    sessionId?: string;
    nonce?: string;
    timestampMs?: number;
    agentId?: string;
    signWith?: CryptoKey;
    /** More AUTH fields (e.g. `development`, `ledger`). */
    extra?: Record<string, unknown>;
  } = {},
) {
  const fields = {
    hubId: overrides.hubId ?? s.challenge.hubId,
    sessionId: overrides.sessionId ?? s.challenge.sessionId,
    nonce: overrides.nonce ?? s.challenge.nonce,
    timestampMs: overrides.timestampMs ?? Date.now(),
    agentId: overrides.agentId ?? agent.id,
  };
  const signature = await signAuth(overrides.signWith ?? agent.privateKey, fields);
  const body = {
    agentId: fields.agentId,
    sessionId: fields.sessionId,
    nonce: fields.nonce,
    timestampMs: fields.timestampMs,
    signature,
    agentVersion: "fake",
    settings: SETTINGS,
    ...overrides.extra,
  };
  s.ws.send(encodeControl(ControlKind.AUTH, jsonBytes(body)));
  return body;
}

/** A hub impostor: TLS with its own key, a WebSocket endpoint, and a script run on each agent connection. */
export async function startFakeHub(onAgent: (ws: WebSocket) => void) {
  const tls = await generateSelfSigned(`/tmp/ws-fakehub-${process.pid}-${Date.now()}`);
  const server = https.createServer({ cert: tls.cert, key: tls.key });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  let connections = 0;
  wss.on("connection", (ws) => {
    connections++;
    ws.on("error", () => {});
    onAgent(ws);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `https://127.0.0.1:${port}`,
    pin: tls.pin,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** How a stream a scripted hub opened ended at the agent. */
export type StreamOutcome = { kind: "reset"; code: number; reason: string } | { kind: "response"; status: number };

export interface ScriptedHubSession {
  /** Opens a stream with any head (one the real hub would never send, too), sends the body and END. */
  request(
    head: Omit<RequestHead, "requestId" | "headers" | "bodyBytes" | "estimatedTokens"> & { headers?: [string, string][] },
    body?: string,
  ): Promise<StreamOutcome>;
}

/**
 * A hub impostor that completes the handshake as the agent's own hub would (the agent checks the hub id and
 * the pin; it cannot verify the hub's signature-free WELCOME) and then sends whatever request heads a test
 * asks for: the agent's own defences, without the real hub's filtering in front of them.
 */
export async function startScriptedHub(hubId: string) {
  let resolveSession: (s: ScriptedHubSession) => void;
  const session = new Promise<ScriptedHubSession>((r) => (resolveSession = r));
  const hub = await startFakeHub((ws) => {
    const waiting = new Map<number, (o: StreamOutcome) => void>();
    let nextStreamId = 1;
    ws.on("message", (data: Buffer) => {
      for (const r of decodeMessage(new Uint8Array(data))) {
        if (!r.ok) continue;
        const f: Frame = r.frame;
        if (f.type === FrameType.PING) ws.send(encodePong(f.data));
        else if (f.type === FrameType.CONTROL && f.kind === ControlKind.AUTH) {
          ws.send(
            encodeControl(
              ControlKind.WELCOME,
              jsonBytes({ agentId: "agt_scripted", sessionId: "ses_scripted", serverTimeMs: Date.now(), heartbeatIntervalMs: 15_000, settings: SETTINGS }),
            ),
          );
        } else if (f.type === FrameType.CONTROL && f.kind === ControlKind.INVENTORY) {
          resolveSession({
            request(head, body = "") {
              const streamId = nextStreamId;
              nextStreamId += 2;
              const bytes = new TextEncoder().encode(body);
              const full: RequestHead = {
                requestId: `req_scripted${streamId}`,
                headers: [["content-type", "application/json"]],
                bodyBytes: head.method === "POST" ? bytes.length : null,
                ...head,
              };
              const outcome = new Promise<StreamOutcome>((resolve) => waiting.set(streamId, resolve));
              ws.send(encodeOpen(streamId, jsonBytes(full)));
              if (bytes.length > 0) ws.send(encodeData(streamId, bytes));
              ws.send(encodeEnd(streamId));
              return outcome;
            },
          });
        } else if (f.type === FrameType.RESET) {
          waiting.get(f.streamId)?.({ kind: "reset", code: f.code, reason: f.reason });
          waiting.delete(f.streamId);
        } else if (f.type === FrameType.RESPONSE) {
          const head = JSON.parse(new TextDecoder().decode(f.payload)) as { status: number };
          waiting.get(f.streamId)?.({ kind: "response", status: head.status });
          waiting.delete(f.streamId);
        }
      }
    });
    ws.send(
      encodeControl(
        ControlKind.CHALLENGE,
        jsonBytes({
          protocolVersion: PROTOCOL_VERSION,
          hubId,
          sessionId: "ses_scripted",
          nonce: toBase64Url(randomBytes(32)),
          issuedAtMs: Date.now(),
          settings: SETTINGS,
        }),
      ),
    );
  });
  return { ...hub, session };
}
