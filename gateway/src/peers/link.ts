/**
 * The forwarding end of a gateway link: this gateway dials another (the one holding an agent's connection),
 * over TLS pinned to the key that gateway announced, presenting that gateway's secret, and opens one stream per
 * forwarded request — the same `HubStream` the request path uses on a local agent, so failover, flow control,
 * abort and metering work as they do locally. The other gateway only pipes (`session.ts`).
 */
import net from "node:net";
import tls from "node:tls";
import { WebSocket } from "ws";
import {
  CloseCode,
  ControlKind,
  encodeControl,
  encodeOpen,
  encodeReset,
  FRAME_BYTES_MAX,
  jsonBytes,
  ResetCode,
  TUNNEL_UPGRADE_TIMEOUT_MS,
  type Frame,
  type RequestHead,
  type SettlementStatement,
  type Settings,
} from "@wellspring/protocol";
import type { Logger } from "../log.ts";
import { HubStream, type StreamSink } from "../tunnel/hub_stream.ts";
import { onResponseFrame, type StreamFrameHost } from "../tunnel/stream_frames.ts";
import { pinOfSocket } from "../tls.ts";
import type { PeerRow } from "./directory.ts";
import { PeerSocket } from "./socket.ts";

/** The path of the link's WebSocket on the agent listener. */
export const PEER_PATH = "/gateway/v1/peer";
/** The header naming the dialling gateway (for the other's logs). */
export const PEER_GATEWAY_HEADER = "x-wellspring-gateway";

/** Opens TLS to `url` and resolves only when the server's key matches `pin` (chain validation is replaced by the pin). */
function connectPinned(url: URL, pin: string, timeoutMs: number): Promise<tls.TLSSocket> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host, port: Number(url.port || 443) });
    raw.setNoDelay(true);
    const socket = tls.connect({ socket: raw, servername: net.isIP(host) ? undefined : host, rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`Cannot connect to gateway ${url.host}: TLS handshake took over ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const seen = pinOfSocket(socket);
      if (seen !== pin) {
        socket.destroy();
        reject(new Error(`Cannot connect to gateway ${url.host}: its key ${seen} is not the one it announced`));
        return;
      }
      resolve(socket);
    });
    socket.once("error", (error: Error) => {
      clearTimeout(timer);
      reject(new Error(`Cannot connect to gateway ${url.host}: ${error.message}`));
    });
  });
}

export class PeerLink {
  readonly gatewayId: string;
  readonly row: PeerRow;
  #end: ForwardingEnd | null = null;
  #connecting: Promise<void> | null = null;
  #closed = false;

  constructor(
    row: PeerRow,
    private readonly selfId: string,
    private readonly own: Settings,
    private readonly log: Logger,
  ) {
    this.gatewayId = row.gatewayId;
    this.row = row;
    this.log = log.child({ peer: row.gatewayId });
  }

  /** Streams may be opened now. */
  get ready(): boolean {
    return this.#end !== null && this.#end.peer !== null && !this.#end.closed;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Streams the other gateway accepts on this link at once. */
  get capacity(): number {
    return this.#end?.peer?.concurrentStreamsMax ?? 0;
  }

  inFlightFor(agentId: string): number {
    return this.#end?.inFlightFor(agentId) ?? 0;
  }

  /** Dials the other gateway when not connected (again after a loss); resolves when ready or failed. */
  connect(): Promise<void> {
    if (this.#closed || (this.#end && !this.#end.closed)) return this.#connecting ?? Promise.resolve();
    this.#connecting = this.#dial()
      .catch((error: unknown) => this.log.warn("peers.connect_failed", { error }))
      .finally(() => (this.#connecting = null));
    return this.#connecting;
  }

  async #dial(): Promise<void> {
    const url = new URL(this.row.url);
    const socket = await connectPinned(url, this.row.pin, TUNNEL_UPGRADE_TIMEOUT_MS);
    if (this.#closed) {
      socket.destroy();
      return;
    }
    // The pinned socket is the transport; the ws:// scheme only stops ws from making a TLS connection of its own.
    const ws = new WebSocket(`ws://${url.host}${url.pathname}`, {
      createConnection: () => socket,
      headers: { authorization: `Bearer ${this.row.secret}`, [PEER_GATEWAY_HEADER]: this.selfId },
      maxPayload: FRAME_BYTES_MAX,
      perMessageDeflate: false,
      handshakeTimeout: TUNNEL_UPGRADE_TIMEOUT_MS,
      // Both ends are gateways over pinned TLS: no masking (as on the agent tunnel, docs/protocol.md "Transport").
      generateMask: (mask) => mask.fill(0),
    });
    ws.binaryType = "nodebuffer";
    // Its handlers are attached now, not once "open" resolved a promise: the other end's PEER_SETTINGS may be
    // emitted in the same turn as "open".
    const end = new ForwardingEnd(ws, this.own, this.log);
    this.#end = end;
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`gateway ${url.host} refused the link: HTTP ${res.statusCode}`)));
    }).catch((error: unknown) => {
      end.close(CloseCode.GOING_AWAY, "link not opened");
      throw error;
    });
    await end.whenReady;
  }

  openStream(agentId: string, head: RequestHead, sink: StreamSink): HubStream {
    if (!this.ready) throw new Error("gateway link is not ready");
    return this.#end!.openStream(agentId, head, sink);
  }

  sendSettlement(agentId: string, statement: SettlementStatement): void {
    this.#end?.send(encodeControl(ControlKind.PEER_SETTLEMENT, jsonBytes({ agentId, statement })));
  }

  close(): void {
    this.#closed = true;
    this.#end?.close(CloseCode.GOING_AWAY, "gateway link closed");
  }
}

/** One connected link, from this gateway's side. */
class ForwardingEnd extends PeerSocket {
  readonly streams = new Map<number, HubStream>();
  readonly #agentOf = new Map<number, string>();
  #nextStreamId = 1;
  readonly whenReady: Promise<void>;
  #ready!: () => void;
  readonly #frames: StreamFrameHost;

  constructor(ws: WebSocket, own: Settings, log: Logger) {
    super(ws, own, log);
    this.whenReady = new Promise((resolve) => (this.#ready = resolve));
    this.#frames = {
      rules: this.rules,
      send: (frame) => this.send(frame),
      streamFor: (id) => {
        const stream = this.streams.get(id);
        if (!stream && this.rules.neverOpened(id)) this.close(CloseCode.PROTOCOL_ERROR, `frame for stream ${id} that was never opened`);
        return stream;
      },
      resetStream: (id, code, reason) => this.onStreamViolation(id, code, reason),
      close: (code, reason) => this.close(code, reason),
    };
    if (ws.readyState === ws.OPEN) this.sendSettings();
    else ws.once("open", () => this.sendSettings());
  }

  inFlightFor(agentId: string): number {
    let n = 0;
    for (const a of this.#agentOf.values()) if (a === agentId) n++;
    return n;
  }

  openStream(agentId: string, head: RequestHead, sink: StreamSink): HubStream {
    if (this.streams.size >= this.peer!.concurrentStreamsMax) throw new Error("gateway link is at its stream limit");
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    this.rules.open(id);
    const stream = new HubStream(
      id,
      {
        send: (frame) => this.send(frame),
        connectionSendWindow: this.rules.send,
        forget: (sid) => {
          this.streams.delete(sid);
          this.#agentOf.delete(sid);
        },
      },
      sink,
      this.peer!.streamWindowBytes,
      this.own.streamWindowBytes,
    );
    this.streams.set(id, stream);
    this.#agentOf.set(id, agentId);
    this.send(encodeOpen(id, jsonBytes({ agentId, head })));
    return stream;
  }

  protected onReady(): void {
    this.#ready();
  }

  protected onFrame(frame: Frame): void {
    if (onResponseFrame(this.#frames, frame)) return;
    // OPEN, GOAWAY and CONTROL from the holding end: only the forwarding end opens streams or sends controls.
    this.close(CloseCode.PROTOCOL_ERROR, `unexpected frame type ${frame.type} from the holding gateway`);
  }

  protected onStreamViolation(streamId: number, code: number, message: string): void {
    this.streams.get(streamId)?.onRemoteReset(code, message, "agent");
    this.send(encodeReset(streamId, code, message));
  }

  protected onClosed(reason: string): void {
    this.#ready();
    for (const stream of [...this.streams.values()]) stream.onRemoteReset(ResetCode.INTERNAL, reason, "connection");
    this.streams.clear();
    this.#agentOf.clear();
  }
}
