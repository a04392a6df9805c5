/**
 * The holding end of a gateway link: another gateway forwards requests for agents whose connection this
 * gateway holds. Each forwarded stream becomes a stream on the agent's connection, and frames are piped both
 * ways without reading them: this gateway meters nothing, records nothing and settles nothing (the forwarding
 * gateway holds the user's request, hold and bytes, and settles once).
 *
 * Flow control is hop by hop, as on the tunnel: a request body chunk is granted back to the forwarding gateway
 * once the agent took it; a response chunk is granted back to the agent once it was sent on to the forwarding
 * gateway within the credit that gateway gave (which it gives as its client reads). So a slow client stops the
 * provider through both gateways, and each holds at most its stream window per stream.
 */
import type { WebSocket } from "ws";
import {
  CloseCode,
  ControlKind,
  encodeEnd,
  encodeReset,
  encodeResponse,
  encodeWindow,
  FrameType,
  jsonBytes,
  parseJson,
  peerOpen,
  peerSettlement,
  RecvWindow,
  ResetCode,
  SendWindow,
  sendWithCredit,
  type Frame,
  type Settings,
} from "@wellspring/protocol";
import type { Logger } from "../log.ts";
import type { HubStream } from "../tunnel/hub_stream.ts";
import type { AgentRegistry } from "../tunnel/registry.ts";
import { PeerSocket } from "./socket.ts";

/** One forwarded stream at the holding gateway. */
interface Piped {
  agent: HubStream | null;
  /** What this end may send the forwarding end on the stream (its credit). */
  send: SendWindow;
  /** What the forwarding end may send here (request body). */
  recv: RecvWindow;
  /** Response frames to the forwarding end, in order. */
  out: Promise<void>;
  /** Request body chunks to the agent, in order. */
  body: Promise<void>;
  done: boolean;
  abort: AbortController;
}

const ignore = () => undefined;

export class PeerSession extends PeerSocket {
  readonly #streams = new Map<number, Piped>();

  constructor(
    ws: WebSocket,
    own: Settings,
    private readonly registry: AgentRegistry,
    readonly fromGatewayId: string,
    log: Logger,
  ) {
    super(ws, own, log.child({ peer: fromGatewayId }));
    this.sendSettings();
  }

  get streamCount(): number {
    return this.#streams.size;
  }

  protected onReady(): void {}

  protected onFrame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.OPEN:
        this.#open(frame.streamId, frame.payload);
        return;
      case FrameType.DATA: {
        const n = frame.payload.length;
        const verdict = this.rules.data(n);
        if (!verdict.ok) {
          this.close(CloseCode.FLOW_CONTROL_ERROR, verdict.reason);
          return;
        }
        if (verdict.reply) this.send(verdict.reply);
        const p = this.#streams.get(frame.streamId);
        if (!p) return;
        if (!p.recv.receive(n)) {
          this.onStreamViolation(frame.streamId, ResetCode.FLOW_CONTROL_ERROR, "stream window exceeded");
          return;
        }
        const chunk = frame.payload;
        p.body = p.body
          .then(() => p.agent!.sendData(chunk))
          .then(() => {
            const inc = p.recv.consume(n);
            if (inc > 0 && !p.done) this.send(encodeWindow(frame.streamId, inc));
          }, ignore);
        return;
      }
      case FrameType.END: {
        const p = this.#streams.get(frame.streamId);
        if (p) p.body = p.body.then(() => p.agent!.end(), ignore);
        return;
      }
      case FrameType.RESET: {
        // The client at the forwarding gateway went away: the agent hears it now, not after queued body bytes.
        const p = this.#streams.get(frame.streamId);
        if (!p) return;
        this.#forget(frame.streamId, p);
        p.agent?.reset(frame.code, frame.reason);
        return;
      }
      case FrameType.WINDOW: {
        if (frame.streamId === 0) {
          const verdict = this.rules.window(frame.increment);
          if (!verdict.ok) this.close(CloseCode.FLOW_CONTROL_ERROR, verdict.reason);
          return;
        }
        const p = this.#streams.get(frame.streamId);
        if (p && !p.send.grant(frame.increment)) this.onStreamViolation(frame.streamId, ResetCode.FLOW_CONTROL_ERROR, "stream window overflow");
        return;
      }
      case FrameType.CONTROL:
        if (frame.kind === ControlKind.PEER_SETTLEMENT) {
          let msg;
          try {
            msg = parseJson(peerSettlement, frame.body);
          } catch (error) {
            this.close(CloseCode.PROTOCOL_ERROR, `bad settlement: ${(error as Error).message}`);
            return;
          }
          // An agent that left meanwhile gets the statement again when it reconnects (unreceipted statements are resent).
          this.registry.get(msg.agentId)?.sendSettlement(msg.statement);
        }
        return;
      default:
        this.close(CloseCode.PROTOCOL_ERROR, `unexpected frame type ${frame.type} from the forwarding gateway`);
    }
  }

  #open(id: number, payload: Uint8Array): void {
    if (!this.rules.open(id)) {
      this.close(CloseCode.PROTOCOL_ERROR, `stream id ${id} is not a new odd id`);
      return;
    }
    let msg;
    try {
      msg = parseJson(peerOpen, payload);
    } catch (error) {
      this.send(encodeReset(id, ResetCode.PROTOCOL_ERROR, `bad request head: ${(error as Error).message}`));
      return;
    }
    const conn = this.registry.get(msg.agentId);
    if (!conn || !conn.routable) {
      this.send(encodeReset(id, ResetCode.AGENT_NOT_HERE, "the agent is not connected to this gateway"));
      return;
    }
    if (conn.inFlight >= conn.capacity) {
      this.send(encodeReset(id, ResetCode.STREAM_LIMIT, "the agent is at its stream limit"));
      return;
    }
    const p: Piped = {
      agent: null,
      send: new SendWindow(this.peer!.streamWindowBytes),
      recv: new RecvWindow(this.own.streamWindowBytes),
      out: Promise.resolve(),
      body: Promise.resolve(),
      done: false,
      abort: new AbortController(),
    };
    this.#streams.set(id, p);
    const then = (step: () => unknown) => {
      p.out = p.out.then(step).then(ignore, ignore);
    };
    p.agent = conn.openStream(msg.head, {
      response: (head) => then(() => this.send(encodeResponse(id, jsonBytes(head)))),
      data: (chunk) =>
        then(async () => {
          const sent = await sendWithCredit(
            id,
            chunk,
            { stream: p.send, connection: this.rules.send },
            (f) => this.send(f),
            () => p.done,
            p.abort.signal,
          );
          p.agent!.consumed(sent);
        }),
      end: (trailer) =>
        then(() => {
          if (p.done) return;
          this.send(encodeEnd(id, trailer ? jsonBytes(trailer) : undefined));
          this.#forget(id, p);
        }),
      reset: (code, reason, cause) =>
        then(() => {
          if (p.done) return;
          this.send(encodeReset(id, cause === "connection" ? ResetCode.AGENT_LOST : code, reason));
          this.#forget(id, p);
        }),
    });
  }

  #forget(id: number, p: Piped): void {
    p.done = true;
    p.abort.abort();
    p.send.close();
    this.#streams.delete(id);
  }

  protected onStreamViolation(streamId: number, code: number, message: string): void {
    const p = this.#streams.get(streamId);
    if (p) {
      this.#forget(streamId, p);
      p.agent?.reset(ResetCode.CANCEL, message);
    }
    this.send(encodeReset(streamId, code, message));
  }

  protected onClosed(reason: string): void {
    for (const [id, p] of [...this.#streams]) {
      this.#forget(id, p);
      p.agent?.reset(ResetCode.CANCEL, reason);
    }
  }
}
