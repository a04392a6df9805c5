/** Hand-driven tunnel peers for handshake and fuzz tests: a fake agent (Node ws client) and a fake hub. */
import https from "node:https";
import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";
import {
  ControlKind,
  decodeFrame,
  decodeMessage,
  encodeControl,
  FrameType,
  generateAgentKeyPair,
  jsonBytes,
  parseJson,
  challenge as challengeSchema,
  signAuth,
  type Challenge,
} from "@wellspring/protocol";
import { newId, type Db } from "@wellspring/db";
import { generateSelfSigned } from "../../gateway/src/tls.ts";

export const SETTINGS = { streamWindowBytes: 262_144, connectionWindowBytes: 16_777_216, concurrentStreamsMax: 64 };

export async function registerFakeAgent(db: Db, ownerId: string, status: "active" | "revoked" = "active") {
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

export async function sendAuth(s: FakeAgentSession, agent: { id: string; privateKey: CryptoKey }, overrides: { hubId?: string; sessionId?: string; nonce?: string; timestampMs?: number; agentId?: string; signWith?: CryptoKey } = {}) {
  const fields = {
    hubId: overrides.hubId ?? s.challenge.hubId,
    sessionId: overrides.sessionId ?? s.challenge.sessionId,
    nonce: overrides.nonce ?? s.challenge.nonce,
    timestampMs: overrides.timestampMs ?? Date.now(),
    agentId: overrides.agentId ?? agent.id,
  };
  const signature = await signAuth(overrides.signWith ?? agent.privateKey, fields);
  const body = { agentId: fields.agentId, sessionId: fields.sessionId, nonce: fields.nonce, timestampMs: fields.timestampMs, signature, agentVersion: "fake", settings: SETTINGS };
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
    close: () => new Promise<void>((r) => {
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
