/**
 * One end of a gateway link: the WebSocket, its frame batching and decoding, the connection-level rules
 * (`SessionRules`: connection window, stream ids), the settings exchange and the heartbeat. The forwarding end
 * (`link.ts`) opens streams; the holding end (`session.ts`) serves them on its agents.
 *
 * The link speaks the tunnel's frame protocol (docs/protocol.md, "Gateway link"): each end's first frame is
 * CONTROL PEER_SETTINGS; there is no challenge — the peer was authenticated before the upgrade (the secret in
 * its directory row, over TLS pinned to the key in that row).
 */
import type { WebSocket } from "ws";
import {
  CLOSE_GRACE_MS,
  CloseCode,
  ControlKind,
  decodeMessage,
  encodeControl,
  encodePing,
  encodePong,
  FrameBatcher,
  FrameType,
  jsonBytes,
  parseJson,
  randomBytes,
  SessionRules,
  settings as settingsSchema,
  type DecodeResult,
  type Frame,
  type Settings,
} from "@wellspring/protocol";
import type { Logger } from "../log.ts";

/** A link end pings this often while open, ms. */
export const PEER_PING_INTERVAL_MS = 5_000;
/** A link end that received nothing for this long is closed (the other gateway or the network is gone), ms. */
export const PEER_SILENCE_MS_MAX = 15_000;

export abstract class PeerSocket {
  protected readonly rules: SessionRules;
  /** The other end's settings; null until its PEER_SETTINGS arrived. */
  peer: Settings | null = null;
  #closed = false;
  #lastFrameAt = Date.now();
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #batch: FrameBatcher;

  constructor(
    protected readonly ws: WebSocket,
    protected readonly own: Settings,
    protected readonly log: Logger,
  ) {
    this.rules = new SessionRules(own.connectionWindowBytes);
    this.#batch = new FrameBatcher((message) => {
      if (this.ws.readyState === this.ws.OPEN) this.ws.send(message, { binary: true });
    });
    ws.on("message", (data, isBinary) => this.#onMessage(data as Buffer, isBinary));
    ws.on("close", () => this.#teardown("gateway link lost"));
    ws.on("error", (error) => this.log.warn("peers.socket_error", { error }));
    this.#timer = setInterval(() => {
      if (Date.now() - this.#lastFrameAt > PEER_SILENCE_MS_MAX) this.close(CloseCode.HEARTBEAT_TIMEOUT, "the other gateway went silent");
      else this.send(encodePing(randomBytes(8)));
    }, PEER_PING_INTERVAL_MS);
    this.#timer.unref();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends this end's settings: call once the socket is open. */
  protected sendSettings(): void {
    this.send(encodeControl(ControlKind.PEER_SETTINGS, jsonBytes(this.own)));
  }

  send(frame: Uint8Array): void {
    if (this.#closed || this.ws.readyState !== this.ws.OPEN) return;
    this.#batch.push(frame);
  }

  close(code: number, reason: string): void {
    if (this.#closed) return;
    this.log.info("peers.close", { code, reason });
    this.#batch.flush();
    this.#teardown(reason);
    try {
      this.ws.close(code, reason.slice(0, 120));
    } catch {
      this.ws.terminate();
    }
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  /** A frame after the settings exchange (not PING/PONG). */
  protected abstract onFrame(frame: Frame): void;
  /** The other end's settings arrived: the link is usable. */
  protected abstract onReady(): void;
  /** The link is over: every stream on it ends. */
  protected abstract onClosed(reason: string): void;
  /** A frame broke a stream's rules: reset that stream. */
  protected abstract onStreamViolation(streamId: number, code: number, message: string): void;

  #teardown(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.rules.close();
    this.onClosed(reason);
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (this.#closed) return;
    if (!isBinary) {
      this.close(CloseCode.PROTOCOL_ERROR, "text messages are not part of the protocol");
      return;
    }
    this.#lastFrameAt = Date.now();
    for (const result of decodeMessage(data)) {
      this.#onDecoded(result);
      if (this.#closed) return;
    }
  }

  #onDecoded(result: DecodeResult): void {
    if (!result.ok) {
      const v = result.violation;
      this.log.warn("peers.violation", { ...v });
      if (v.scope === "connection") this.close(v.closeCode, v.message);
      else this.onStreamViolation(v.streamId, v.resetCode, v.message);
      return;
    }
    const frame = result.frame;
    if (frame.type === FrameType.PING) {
      this.send(encodePong(frame.data));
      return;
    }
    if (frame.type === FrameType.PONG) return;
    if (this.peer === null) {
      if (frame.type !== FrameType.CONTROL || frame.kind !== ControlKind.PEER_SETTINGS) {
        this.close(CloseCode.PEER_SETTINGS_MISSING, "expected PEER_SETTINGS first");
        return;
      }
      try {
        this.peer = parseJson(settingsSchema, frame.body);
      } catch (error) {
        this.close(CloseCode.PROTOCOL_ERROR, `bad settings: ${(error as Error).message}`);
        return;
      }
      this.rules.peerWindow(this.peer.connectionWindowBytes);
      this.onReady();
      return;
    }
    try {
      this.onFrame(frame);
    } catch (error) {
      // A broken invariant stops this link, not the process.
      this.log.error("peers.frame_handler_failed", { error });
      this.close(CloseCode.INTERNAL, "internal error");
    }
  }
}
