/**
 * One request/response exchange on an agent connection, seen from the hub. The proxy drives it:
 * it sends request body bytes (bounded by the agent's windows) and receives the response through a sink,
 * returning credit as its client actually takes the bytes.
 */
import {
  encodeEnd,
  encodeReset,
  encodeWindow,
  RecvWindow,
  SendWindow,
  sendNow,
  sendWithCredit,
  type EndTrailer,
  type RequestHead,
  type ResponseHead,
  type SettlementStatement,
  type WindowGrowth,
} from "@wellspring/protocol";

/**
 * What the request path sends a request to an agent through: the agent's own connection on this gateway
 * (`AgentConnection`), or the link to the gateway that holds that connection (`peers/remote_agent.ts`). Both
 * carry the same frames with the same flow control.
 */
export interface AgentLink {
  readonly agentId: string | null;
  /** Accepts new streams now. */
  readonly routable: boolean;
  readonly isClosed: boolean;
  /** Streams it may carry at once, and carries now (for this gateway's requests). */
  readonly capacity: number;
  readonly inFlight: number;
  /** True for an agent held by another gateway (requests to it are forwarded). */
  readonly remote: boolean;
  /**
   * Until when (epoch ms) the agent's own rate limit has no room, as it last reported (RATE_STATE); 0 = room. A
   * remote agent reports to the gateway that holds it, so the forwarding gateway reads 0 and learns of a refusal
   * from its RESET RATE_LIMITED.
   */
  readonly rateSaturatedUntilMs: number;
  openStream(head: RequestHead, sink: StreamSink): HubStream;
  /** How the hub settled a stream this agent served; the agent signs a receipt for it. */
  sendSettlement(statement: SettlementStatement): void;
  /** False: a development agent without its edge ledger (no statement is sealed or sent). Absent = true. */
  readonly keepsLedger?: boolean;
}

export interface StreamSink {
  response(head: ResponseHead): void;
  /** A chunk of the response body. The sink calls `stream.consumed(n)` once its client took the bytes. */
  data(chunk: Uint8Array): void;
  end(trailer: EndTrailer | null): void;
  /** The stream ended abnormally: RESET from the agent, or the agent connection was lost. */
  reset(code: number, reason: string, cause: "agent" | "connection"): void;
}

export interface StreamTransport {
  send(frame: Uint8Array): void;
  readonly connectionSendWindow: SendWindow;
  /** The connection's receive-window growth (flow.ts), when its streams' windows may grow. */
  readonly windowGrowth?: WindowGrowth;
  forget(streamId: number): void;
}

const STREAM_CLOSED = new Error("stream closed");

export class HubStream {
  readonly sendWindow: SendWindow;
  readonly recvWindow: RecvWindow;
  /** Made only when a request body waits for credit (most streams never do). */
  #abort: AbortController | null = null;
  #closed = false;
  responseStarted = false;
  /** Bytes of DATA received for this stream (response body). */
  bytesReceived = 0;
  bytesSent = 0;
  localEnded = false;
  remoteEnded = false;

  constructor(
    readonly id: number,
    private readonly transport: StreamTransport,
    readonly sink: StreamSink,
    peerStreamWindowBytes: number,
    ownStreamWindowBytes: number,
  ) {
    this.sendWindow = new SendWindow(peerStreamWindowBytes);
    this.recvWindow = new RecvWindow(ownStreamWindowBytes, transport.windowGrowth ?? null);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends request body bytes, waiting for credit; rejects if the stream closes meanwhile. */
  async sendData(chunk: Uint8Array): Promise<void> {
    if (this.#closed) throw new Error("stream closed");
    const windows = { stream: this.sendWindow, connection: this.transport.connectionSendWindow };
    this.#abort ??= new AbortController();
    const sent = await sendWithCredit(
      this.id,
      chunk,
      windows,
      (f) => this.transport.send(f),
      () => this.#closed,
      this.#abort.signal,
    );
    this.bytesSent += sent;
    if (sent < chunk.length) throw new Error("stream closed");
  }

  /**
   * Sends `chunk` now when both windows have credit for all of it (it then leaves in the same message as the
   * OPEN and END of this turn); false, having sent nothing, otherwise — or when the stream is closed.
   */
  sendNow(chunk: Uint8Array): boolean {
    if (this.#closed) return false;
    if (!sendNow(this.id, chunk, { stream: this.sendWindow, connection: this.transport.connectionSendWindow }, (f) => this.transport.send(f))) return false;
    this.bytesSent += chunk.length;
    return true;
  }

  end(): void {
    if (this.#closed || this.localEnded) return;
    this.localEnded = true;
    this.transport.send(encodeEnd(this.id));
    this.#maybeForget();
  }

  /** The client took `bytes` of the response: grant them back to the agent. */
  consumed(bytes: number): void {
    if (this.#closed || bytes === 0) return;
    const inc = this.recvWindow.consume(bytes);
    if (inc > 0) this.transport.send(encodeWindow(this.id, inc));
  }

  /** Aborts the stream from the hub side (client gone, timeout) and tells the agent. */
  reset(code: number, reason: string): void {
    if (this.#closed) return;
    this.transport.send(encodeReset(this.id, code, reason));
    this.#close();
  }

  // --- called by the connection ---

  onResponse(head: ResponseHead): void {
    this.responseStarted = true;
    this.sink.response(head);
  }

  onData(chunk: Uint8Array): void {
    this.bytesReceived += chunk.length;
    this.sink.data(chunk);
  }

  onEnd(trailer: EndTrailer | null): void {
    this.remoteEnded = true;
    this.sink.end(trailer);
    this.#maybeForget();
  }

  onRemoteReset(code: number, reason: string, cause: "agent" | "connection"): void {
    if (this.#closed) return;
    this.#close();
    this.sink.reset(code, reason, cause);
  }

  onWindow(increment: number): boolean {
    return this.sendWindow.grant(increment);
  }

  #maybeForget(): void {
    if (this.localEnded && this.remoteEnded) this.#close();
  }

  #close(): void {
    this.#closed = true;
    this.#abort?.abort(STREAM_CLOSED);
    this.sendWindow.close();
    this.recvWindow.release();
    this.transport.forget(this.id);
  }
}
