/**
 * The hub's end of one agent's WebSocket: handshake (Ed25519 challenge–response), frame dispatch,
 * stream multiplexing with flow control, heartbeats and orderly shutdown.
 *
 * Operating errors (a bad frame, a dropped peer) reset a stream or close this connection with a documented
 * code; they never throw out of the socket handlers, so one agent cannot take the gateway down.
 */
import type { IncomingMessage } from "node:http";
import type { WebSocket } from "ws";
import {
  AUTH_CLOCK_SKEW_MS_MAX,
  AUTH_NONCE_BYTES,
  AUTH_TIMEOUT_MS,
  auth as authSchema,
  CLOSE_GRACE_MS,
  CloseCode,
  CONCURRENT_STREAMS_MAX_DEFAULT,
  CONNECTION_WINDOW_BYTES_DEFAULT,
  ControlKind,
  decodeMessage,
  FrameBatcher,
  type DecodeResult,
  encodeControl,
  encodeGoAway,
  encodeOpen,
  encodePing,
  encodePong,
  encodeReset,
  FrameType,
  GoAwayCode,
  HEARTBEAT_INTERVAL_MS_DEFAULT,
  HEARTBEAT_TIMEOUT_MS_DEFAULT,
  inventory as inventorySchema,
  PRESENCE_PROBE_TIMEOUT_MS_DEFAULT,
  jsonBytes,
  priceAck as priceAckSchema,
  parseJson,
  PROTOCOL_VERSION,
  randomBytes,
  ResetCode,
  SessionRules,
  STREAM_WINDOW_BYTES_DEFAULT,
  toBase64Url,
  verifyAuth,
  type Frame,
  type Inventory,
  type PriceTableMessage,
  type RequestHead,
  type Settings,
  receiptBatch as receiptBatchSchema,
  chainTail as chainTailSchema,
  endpointReport as endpointReportSchema,
  egressProbeAnswer as egressProbeAnswerSchema,
  type EgressProbeAnswer,
  type EndpointReport,
  type ReceiptBatch,
  type ReceiptAck,
  type ChainTailMessage,
  type SettlementStatement,
  type AgentConfig,
  rateState as rateStateSchema,
  type RateState,
  WindowGrowth,
} from "@wellspring/protocol";
import { newId } from "@wellspring/db/core";
import type { Logger } from "../log.ts";
import { HubStream, type AgentLink, type StreamSink } from "./hub_stream.ts";
import { onResponseFrame, type StreamFrameHost } from "./stream_frames.ts";
import { countFrameIn, countFrameOut, countMessageIn } from "../observability/tunnel_counters.ts";

/** Receipts checked in one call (one database transaction) at most. */
export const RECEIPTS_PER_CHECK_MAX = 256;
/**
 * Receipts of one agent waiting to be checked at most; beyond, new ones are dropped unanswered (the agent sends
 * them again: its claims after a reconnect, and its answers to the hub's periodic re-offer of their statements).
 */
export const RECEIPTS_QUEUED_MAX = 10_000;

/** The close reason a production hub gives a development agent (a close reason is at most 123 bytes). */
/**
 * Closes the tunnel of an agent an administrator took out of service: a suspended agent keeps running and asks
 * again later (AGENT_SUSPENDED), a revoked one stops (AGENT_REVOKED).
 */
export function closeRefusedAgent(conn: { close(code: number, reason: string): void }, status: "revoked" | "suspended"): void {
  if (status === "suspended") conn.close(CloseCode.AGENT_SUSPENDED, "agent is suspended by an administrator; retrying later");
  else conn.close(CloseCode.AGENT_REVOKED, "agent is revoked");
}

export const DEVELOPMENT_AGENT_REFUSED_REASON = "production hub: agents with --dev-upstream are refused (start the hub with HUB_DEVELOPMENT=1 for tests)";

export interface TunnelSettings {
  hubId: string;
  streamWindowBytes: number;
  connectionWindowBytes: number;
  concurrentStreamsMax: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  authTimeoutMs: number;
  /** A live session on this gateway must answer a ping within this time to keep its agent from a new connection. */
  presenceProbeTimeoutMs: number;
  /**
   * Admit agents whose provider calls go to a development upstream (AUTH `development`): tests and the demo only.
   * A production hub refuses them (close DEVELOPMENT_AGENT_REFUSED).
   */
  developmentAgentsAllowed: boolean;
}

export const DEFAULT_TUNNEL_SETTINGS: Omit<TunnelSettings, "hubId"> = {
  streamWindowBytes: STREAM_WINDOW_BYTES_DEFAULT,
  connectionWindowBytes: CONNECTION_WINDOW_BYTES_DEFAULT,
  concurrentStreamsMax: CONCURRENT_STREAMS_MAX_DEFAULT,
  heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS_DEFAULT,
  heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS_DEFAULT,
  authTimeoutMs: AUTH_TIMEOUT_MS,
  presenceProbeTimeoutMs: PRESENCE_PROBE_TIMEOUT_MS_DEFAULT,
  developmentAgentsAllowed: false,
};

/** What the hub knows of an enrolled agent: its key, owner and standing (see `AgentDirectory`). */
export interface AgentRecord {
  id: string;
  ownerId: string;
  /** Raw 32-byte Ed25519 public key, base64url. */
  publicKey: string;
  status: "active" | "paused" | "suspended" | "revoked";
  tier: "S" | "A" | "discount";
  discountLane: boolean;
  /** Expert mode: the owner's RPM, TPM and concurrency, which the hub holds the agent to (null = none). */
  rateMode: "auto" | "expert";
  rpmLimit: number | null;
  tpmLimit: number | null;
  concurrencyLimit: number | null;
  /** When it was enrolled: its probation (risk/probation.ts) counts from here. */
  createdAt: Date;
}

/** Where a connection looks up the agent that answers its challenge. */
export interface AgentLookup {
  find(agentId: string): Promise<AgentRecord | null>;
}

/**
 * What a connection tells the gateway; the connection itself keeps no agent state beyond its protocol's (no
 * database writes, no tier or lane: the registry holds what routing and billing read).
 */
export interface ConnectionEvents {
  /**
   * Authenticated as `agent`: may this connection serve it? (One live connection per identity.) The agent
   * names the session it held before this one, if any.
   */
  admit(
    conn: AgentConnection,
    agent: AgentRecord,
    previousSessionId: string | null,
  ): Promise<{ admitted: true } | { admitted: false; code: number; reason: string }>;
  ready(conn: AgentConnection, agent: AgentRecord): void;
  /** The agent answered a heartbeat. */
  alive(conn: AgentConnection): void;
  /** The agent said what it serves (its inventory). */
  inventory(conn: AgentConnection, inventory: Inventory): void;
  /** The agent holds this official price version now. */
  priceAck(conn: AgentConnection, ver: number): void;
  /** Receipts from the agent (RECEIPT, or CLAIM after a reconnect): one RECEIPT_ACK each, in order. */
  receipts?(conn: AgentConnection, batch: ReceiptBatch): Promise<ReceiptAck[]>;
  /** The agent's chain tail (its answer to the hub's CHAIN_TAIL). */
  chainTail?(conn: AgentConnection, tail: ChainTailMessage): void;
  /** The agent reported the rate limits it holds (RATE_STATE). */
  rateState?(conn: AgentConnection, state: RateState): void;
  /** The agent refused a call: its provider host resolved outside the provider's networks (CONTROL ENDPOINT_REPORT). */
  endpointReport?(conn: AgentConnection, report: EndpointReport): void;
  /** The agent's answer to an egress probe: the address the hub's echo told it (CONTROL EGRESS_PROBE). */
  egressAnswer?(conn: AgentConnection, answer: EgressProbeAnswer): void;
  closed(conn: AgentConnection): void;
}

type State = "authenticating" | "ready" | "draining" | "closed";

export class AgentConnection implements AgentLink {
  readonly remote = false;
  readonly sessionId = newId("ses");
  readonly remoteIp: string;
  agentId: string | null = null;
  /** The Ed25519 public key (raw, base64url) this session authenticated with: its receipts are verified with it. */
  publicKey: string | null = null;
  /** The price version this agent acknowledged holding on this session (PRICE_ACK). */
  priceVerAcked: number | null = null;
  /** The version the agent announced in its AUTH. */
  agentVersion: string | null = null;
  /**
   * False for a development agent started without its edge ledger (AUTH `ledger: false`, bench only): it signs no
   * receipts, so it gets no statements, tails or re-offers.
   */
  keepsLedger = true;
  state: State = "authenticating";
  inventory: Inventory | null = null;
  /** The agent's settings: what it lets us send. */
  peer: Settings | null = null;
  /** The rate limits the agent last reported holding (RATE_STATE); null before its first report. */
  rateState: RateState | null = null;
  /** Until when the agent said it has no room for another request (its own rate limit), epoch ms. */
  rateSaturatedUntilMs = 0;
  /** The rate configuration last sent (CONFIG), to send it again only when it changes. */
  #configSent: string | null = null;
  readonly streams = new Map<number, HubStream>();
  /** Connection-level flow control and stream-id rules, the same as the agent's (protocol/src/session.ts). */
  readonly #rules: SessionRules;
  /** Response windows of fast readers grow from this budget (flow.ts): bulk is not held to one window per round trip. */
  readonly #windowGrowth = new WindowGrowth();
  #nextStreamId = 1;
  #nonce = toBase64Url(randomBytes(AUTH_NONCE_BYTES));
  #authTimer: ReturnType<typeof setTimeout> | null = null;
  #heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  #lastFrameAt = Date.now();
  readonly log: Logger;
  rttMs: number | null = null;
  #pingSentAt = new Map<string, number>();
  /** Presence probes waiting for their PONG, by ping data. */
  readonly #probes = new Map<string, (answered: boolean) => void>();
  readonly connectedAt = Date.now();
  /** Receipts that came while others were being checked: taken together next, in the order they came. */
  #receiptQueue: ReceiptBatch["receipts"] = [];
  #checkingReceipts = false;

  constructor(
    private readonly ws: WebSocket,
    req: IncomingMessage,
    private readonly agents: AgentLookup,
    private readonly settings: TunnelSettings,
    private readonly events: ConnectionEvents,
    log: Logger,
  ) {
    this.remoteIp = req.socket.remoteAddress ?? "unknown";
    this.log = log.child({ sessionId: this.sessionId });
    this.#rules = new SessionRules(settings.connectionWindowBytes);
    this.#frameHost = {
      rules: this.#rules,
      send: (frame) => this.send(frame),
      streamFor: (id) => this.#streamFor(id),
      resetStream: (id, code, reason) => this.#resetStream(id, code, reason),
      close: (code, reason) => this.close(code, reason),
    };
    ws.on("message", (data, isBinary) => this.#onMessage(data as Buffer, isBinary));
    ws.on("close", (code) => this.#onClose(code));
    ws.on("error", (error) => this.log.warn("tunnel.socket_error", { error }));
    this.#authTimer = setTimeout(() => this.close(CloseCode.AUTH_TIMEOUT, "no answer to the challenge in time"), settings.authTimeoutMs);
    this.#sendControl(ControlKind.CHALLENGE, {
      protocolVersion: PROTOCOL_VERSION,
      hubId: settings.hubId,
      sessionId: this.sessionId,
      nonce: this.#nonce,
      issuedAtMs: Date.now(),
      settings: this.#ownSettings(),
    });
  }

  get isClosed(): boolean {
    return this.state === "closed";
  }

  get routable(): boolean {
    return this.state === "ready" && this.inventory !== null;
  }

  get inFlight(): number {
    return this.streams.size;
  }

  get capacity(): number {
    return Math.min(this.peer?.concurrentStreamsMax ?? 0, this.inventory?.concurrentStreamsMax ?? 0, this.settings.concurrentStreamsMax);
  }

  /** Bytes the WebSocket has queued but not yet written to the kernel. */
  get bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  /** Bytes received for streams and not yet taken by clients: what this connection holds in memory. */
  get heldResponseBytes(): number {
    let total = 0;
    for (const s of this.streams.values()) total += s.recvWindow.outstandingBytes;
    return total;
  }

  #ownSettings(): Settings {
    return {
      streamWindowBytes: this.settings.streamWindowBytes,
      connectionWindowBytes: this.settings.connectionWindowBytes,
      concurrentStreamsMax: this.settings.concurrentStreamsMax,
    };
  }

  openStream(head: RequestHead, sink: StreamSink): HubStream {
    if (!this.routable) throw new Error("connection is not accepting streams");
    if (this.streams.size >= this.capacity) throw new Error("connection is at its stream limit");
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    this.#rules.open(id);
    const stream = new HubStream(
      id,
      {
        send: (frame) => this.send(frame),
        connectionSendWindow: this.#rules.send,
        windowGrowth: this.#windowGrowth,
        forget: (sid) => this.streams.delete(sid),
      },
      sink,
      this.peer!.streamWindowBytes,
      this.settings.streamWindowBytes,
    );
    this.streams.set(id, stream);
    this.send(encodeOpen(id, jsonBytes(head)));
    return stream;
  }

  /** Frames of one turn leave as one message (protocol/src/batch.ts). */
  readonly #batch = new FrameBatcher((message) => {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(message, { binary: true });
  });

  send(frame: Uint8Array): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    countFrameOut(frame);
    this.#batch.push(frame);
  }

  /** Sends the official price table in force; the agent answers PRICE_ACK with the version it now holds. */
  /** How the hub settled a stream this agent served; the agent answers with a signed RECEIPT. */
  sendSettlement(statement: SettlementStatement): void {
    if ((this.state !== "ready" && this.state !== "draining") || !this.keepsLedger) return;
    this.#sendControl(ControlKind.SETTLEMENT, statement);
  }

  /** The hub's tail of this agent's receipt chain; the agent compares and answers with its own. */
  sendChainTail(tail: ChainTailMessage): void {
    if ((this.state !== "ready" && this.state !== "draining") || !this.keepsLedger) return;
    this.#sendControl(ControlKind.CHAIN_TAIL, tail);
  }

  sendPriceTable(table: PriceTableMessage): void {
    if (this.state !== "ready" && this.state !== "draining") return;
    this.#sendControl(ControlKind.PRICE_TABLE, table);
  }

  /** The owner's rate mode and limits; sent when they differ from what this session was last sent. */
  sendConfig(config: AgentConfig): void {
    if (this.state !== "ready" && this.state !== "draining") return;
    const key = JSON.stringify(config);
    if (key === this.#configSent) return;
    this.#configSent = key;
    this.#sendControl(ControlKind.CONFIG, config);
  }

  /** Pings the agent now: true when its PONG arrives within `timeoutMs`, false on timeout or close. */
  probe(timeoutMs: number): Promise<boolean> {
    if (this.state === "closed") return Promise.resolve(false);
    const data = randomBytes(8);
    const key = toBase64Url(data);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#probes.delete(key);
        resolve(false);
      }, timeoutMs);
      this.#probes.set(key, (answered) => {
        clearTimeout(timer);
        this.#probes.delete(key);
        resolve(answered);
      });
      this.send(encodePing(data));
    });
  }

  /** Asks the agent to call the egress echo with this nonce (CONTROL EGRESS_PROBE). */
  sendEgressProbe(nonce: string): void {
    this.#sendControl(ControlKind.EGRESS_PROBE, { nonce });
  }

  /**
   * One agent's receipts are taken in the order they came (the chain is checked link by link), and whatever came
   * while a check ran is checked together next (up to RECEIPTS_PER_CHECK_MAX): one transaction for many receipts.
   */
  async #checkReceipts(): Promise<void> {
    if (this.#checkingReceipts) return;
    this.#checkingReceipts = true;
    try {
      while (this.#receiptQueue.length) {
        const receipts = this.#receiptQueue.splice(0, RECEIPTS_PER_CHECK_MAX);
        try {
          const acks = (await this.events.receipts?.(this, { receipts })) ?? [];
          for (const ack of acks) this.#sendControl(ControlKind.RECEIPT_ACK, ack);
        } catch (error) {
          this.log.error("tunnel.receipts_failed", { agentId: this.agentId, error });
        }
      }
    } finally {
      this.#checkingReceipts = false;
    }
  }

  #sendControl(kind: number, body: unknown): void {
    this.send(encodeControl(kind, jsonBytes(body)));
  }

  /** Stops new streams, lets running ones finish, then closes. */
  drain(code: number, reason: string): void {
    if (this.state === "closed") return;
    this.state = "draining";
    this.send(encodeGoAway(this.#rules.highestStreamId, code, reason));
    if (this.streams.size === 0) this.close(CloseCode.GOING_AWAY, reason);
  }

  close(code: number, reason: string): void {
    if (this.state === "closed") return;
    this.log.info("tunnel.close", { agentId: this.agentId, code, reason });
    this.#teardown(`connection closed: ${reason}`);
    this.#batch.flush(); // what was sent before the close (a RESET, a GOAWAY) goes first
    try {
      this.ws.close(code, reason.slice(0, 120));
    } catch {
      this.ws.terminate();
    }
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  #teardown(reason: string): void {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.#authTimer) clearTimeout(this.#authTimer);
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    this.#rules.close();
    for (const stream of [...this.streams.values()]) stream.onRemoteReset(ResetCode.INTERNAL, reason, "connection");
    this.streams.clear();
    for (const settle of [...this.#probes.values()]) settle(false);
    this.events.closed(this);
  }

  #onClose(code: number): void {
    if (this.state !== "closed") this.log.info("tunnel.closed_by_peer", { agentId: this.agentId, code });
    this.#teardown("agent connection lost");
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (this.state === "closed") return;
    if (!isBinary) {
      this.close(CloseCode.PROTOCOL_ERROR, "text messages are not part of the protocol");
      return;
    }
    this.#lastFrameAt = Date.now();
    countMessageIn(data.length);
    // One message may carry several frames; a frame that closes the connection stops the rest.
    for (const result of decodeMessage(data)) if (!this.#onDecoded(result)) return;
  }

  /** Handles one decoded frame; false once the connection is closed. */
  #onDecoded(result: DecodeResult): boolean {
    this.#handleDecoded(result);
    return this.state !== "closed";
  }

  #handleDecoded(result: DecodeResult): void {
    if (!result.ok) {
      const v = result.violation;
      this.log.warn("tunnel.violation", { agentId: this.agentId, ...v });
      if (v.scope === "connection") this.close(v.closeCode, v.message);
      else this.#resetStream(v.streamId, v.resetCode, v.message);
      return;
    }
    countFrameIn(result.frame.type);
    try {
      this.#onFrame(result.frame);
    } catch (error) {
      // A broken invariant stops this connection, not the process.
      this.log.error("tunnel.frame_handler_failed", { agentId: this.agentId, error });
      this.close(CloseCode.INTERNAL, "internal error");
    }
  }

  #resetStream(streamId: number, code: number, reason: string): void {
    const stream = this.streams.get(streamId);
    if (stream) {
      stream.onRemoteReset(code, reason, "agent");
    }
    this.send(encodeReset(streamId, code, reason));
  }

  /** What the shared stream-frame handling (stream_frames.ts) needs of this connection. */
  readonly #frameHost: StreamFrameHost;

  #onFrame(frame: Frame): void {
    if (this.state === "authenticating") {
      if (frame.type === FrameType.CONTROL && frame.kind === ControlKind.AUTH) {
        void this.#onAuth(frame.body);
        return;
      }
      if (frame.type === FrameType.PING || frame.type === FrameType.PONG) return;
      this.close(CloseCode.PROTOCOL_ERROR, "expected AUTH first");
      return;
    }
    switch (frame.type) {
      case FrameType.OPEN:
        // Only the hub opens streams in protocol v1.
        this.close(CloseCode.PROTOCOL_ERROR, "agents may not open streams");
        return;
      case FrameType.RESPONSE:
      case FrameType.DATA:
      case FrameType.END:
      case FrameType.RESET:
      case FrameType.WINDOW:
        onResponseFrame(this.#frameHost, frame);
        return;
      case FrameType.PING:
        this.send(encodePong(frame.data));
        return;
      case FrameType.PONG: {
        const key = toBase64Url(frame.data);
        this.#probes.get(key)?.(true);
        const sentAt = this.#pingSentAt.get(key);
        if (sentAt !== undefined) {
          this.rttMs = Date.now() - sentAt;
          this.#pingSentAt.delete(key);
          if (this.state === "ready" || this.state === "draining") this.events.alive(this);
        }
        return;
      }
      case FrameType.GOAWAY:
        this.log.info("tunnel.agent_goaway", { agentId: this.agentId, code: frame.code, reason: frame.reason });
        this.state = "draining";
        if (this.streams.size === 0) this.close(CloseCode.GOING_AWAY, "agent is going away");
        return;
      case FrameType.CONTROL:
        this.#onControl(frame.kind, frame.body);
        return;
    }
  }

  /** A frame for a stream id: the open stream, or undefined for one already closed (ignored, as in HTTP/2). */
  #streamFor(streamId: number): HubStream | undefined {
    const stream = this.streams.get(streamId);
    if (stream) return stream;
    if (this.#rules.neverOpened(streamId)) this.close(CloseCode.PROTOCOL_ERROR, `frame for stream ${streamId} that was never opened`);
    return undefined;
  }

  #onControl(kind: number, body: Uint8Array): void {
    switch (kind) {
      case ControlKind.INVENTORY: {
        let inv: Inventory;
        try {
          inv = parseJson(inventorySchema, body);
        } catch (error) {
          this.close(CloseCode.PROTOCOL_ERROR, `bad inventory: ${(error as Error).message}`);
          return;
        }
        this.inventory = inv;
        this.log.info("tunnel.inventory", { agentId: this.agentId, models: inv.models.length, agentVersion: inv.agentVersion });
        this.events.inventory(this, inv);
        return;
      }
      case ControlKind.NOTICE:
        return;
      case ControlKind.PRICE_ACK: {
        let ver: number;
        try {
          ver = parseJson(priceAckSchema, body).ver;
        } catch (error) {
          this.close(CloseCode.PROTOCOL_ERROR, `bad price ack: ${(error as Error).message}`);
          return;
        }
        this.priceVerAcked = ver;
        this.log.info("tunnel.price_ack", { agentId: this.agentId, ver });
        this.events.priceAck(this, ver);
        return;
      }
      case ControlKind.PRICE_TABLE:
        this.close(CloseCode.PROTOCOL_ERROR, "only the hub sends price tables");
        return;
      case ControlKind.RECEIPT:
      case ControlKind.CLAIM: {
        let batch: ReceiptBatch;
        try {
          batch = parseJson(receiptBatchSchema, body);
        } catch (error) {
          this.close(CloseCode.PROTOCOL_ERROR, `bad receipts: ${(error as Error).message}`);
          return;
        }
        const room = RECEIPTS_QUEUED_MAX - this.#receiptQueue.length;
        if (room < batch.receipts.length)
          this.log.warn("tunnel.receipts_dropped", {
            agentId: this.agentId,
            dropped: batch.receipts.length - Math.max(room, 0),
            queuedMax: RECEIPTS_QUEUED_MAX,
          });
        if (room > 0) this.#receiptQueue.push(...batch.receipts.slice(0, room));
        void this.#checkReceipts();
        return;
      }
      case ControlKind.CHAIN_TAIL: {
        try {
          this.events.chainTail?.(this, parseJson(chainTailSchema, body));
        } catch (error) {
          this.close(CloseCode.PROTOCOL_ERROR, `bad chain tail: ${(error as Error).message}`);
        }
        return;
      }
      case ControlKind.RATE_STATE: {
        let state: RateState;
        try {
          state = parseJson(rateStateSchema, body);
        } catch (error) {
          this.close(CloseCode.PROTOCOL_ERROR, `bad rate state: ${(error as Error).message}`);
          return;
        }
        this.rateState = state;
        this.rateSaturatedUntilMs = state.retryAfterMs > 0 ? Date.now() + state.retryAfterMs : 0;
        this.events.rateState?.(this, state);
        return;
      }
      case ControlKind.ENDPOINT_REPORT: {
        let report: EndpointReport;
        try {
          report = parseJson(endpointReportSchema, body);
        } catch (error) {
          this.close(CloseCode.PROTOCOL_ERROR, `bad endpoint report: ${(error as Error).message}`);
          return;
        }
        // Throttled and logged by the listener (per agent, across this gateway's connections).
        this.events.endpointReport?.(this, report);
        return;
      }
      case ControlKind.EGRESS_PROBE: {
        let answer: EgressProbeAnswer;
        try {
          answer = parseJson(egressProbeAnswerSchema, body);
        } catch (error) {
          this.close(CloseCode.PROTOCOL_ERROR, `bad egress probe answer: ${(error as Error).message}`);
          return;
        }
        this.events.egressAnswer?.(this, answer);
        return;
      }
      case ControlKind.SETTLEMENT:
      case ControlKind.RECEIPT_ACK:
      case ControlKind.CONFIG:
        this.close(CloseCode.PROTOCOL_ERROR, "only the hub sends settlements, receipt acknowledgements and configuration");
        return;
      case ControlKind.CHALLENGE:
      case ControlKind.AUTH:
      case ControlKind.WELCOME:
        this.close(CloseCode.PROTOCOL_ERROR, "handshake message after the handshake");
        return;
      default:
        // Reserved kinds this hub version does not implement yet are ignored (see docs/protocol.md).
        return;
    }
  }

  async #onAuth(body: Uint8Array): Promise<void> {
    let msg;
    try {
      msg = parseJson(authSchema, body);
    } catch (error) {
      this.close(CloseCode.AUTH_FAILED, `bad AUTH: ${(error as Error).message}`);
      return;
    }
    if (msg.sessionId !== this.sessionId || msg.nonce !== this.#nonce) {
      this.close(CloseCode.AUTH_FAILED, "AUTH does not answer this session's challenge");
      return;
    }
    if (Math.abs(Date.now() - msg.timestampMs) > AUTH_CLOCK_SKEW_MS_MAX) {
      this.close(CloseCode.CLOCK_SKEW, `agent clock differs from the hub's by more than ${AUTH_CLOCK_SKEW_MS_MAX} ms`);
      return;
    }
    // The nonce is single-use: whatever happens next, this session never accepts another AUTH.
    this.#nonce = "";
    let agent;
    try {
      agent = await this.agents.find(msg.agentId);
    } catch (error) {
      // Not the agent's fault: it reconnects and tries again (UNKNOWN_AGENT would stop it for good).
      this.log.error("tunnel.agent_lookup_failed", { agentId: msg.agentId, error });
      this.close(CloseCode.INTERNAL, "cannot look the agent up; try again");
      return;
    }
    if (this.state !== "authenticating") return;
    if (!agent) {
      this.close(CloseCode.UNKNOWN_AGENT, "unknown agent");
      return;
    }
    const valid = await verifyAuth(agent.publicKey, msg.signature, {
      hubId: this.settings.hubId,
      sessionId: this.sessionId,
      nonce: msg.nonce,
      timestampMs: msg.timestampMs,
      agentId: msg.agentId,
    });
    if (this.state !== "authenticating") return;
    if (!valid) {
      this.log.warn("tunnel.auth_failed", { agentId: msg.agentId, remoteIp: this.remoteIp });
      this.close(CloseCode.AUTH_FAILED, "signature does not verify for this hub and session");
      return;
    }
    if (agent.status === "revoked" || agent.status === "suspended") {
      closeRefusedAgent(this, agent.status);
      return;
    }
    if (msg.development === true && !this.settings.developmentAgentsAllowed) {
      this.log.warn("tunnel.development_agent_refused", { agentId: agent.id, remoteIp: this.remoteIp });
      this.close(CloseCode.DEVELOPMENT_AGENT_REFUSED, DEVELOPMENT_AGENT_REFUSED_REASON);
      return;
    }
    // An agent without its ledger owes its owner no proof: only a development agent (above: a development hub) may.
    if (msg.ledger === false && msg.development !== true) {
      this.log.warn("tunnel.ledger_off_refused", { agentId: agent.id, remoteIp: this.remoteIp });
      this.close(CloseCode.PROTOCOL_ERROR, "ledger: false is for development agents only");
      return;
    }
    this.keepsLedger = msg.ledger !== false;
    this.agentId = agent.id;
    this.publicKey = agent.publicKey;
    this.agentVersion = msg.agentVersion;
    // One live connection per identity; the auth timer still bounds the wait (a probe is shorter).
    const admission = await this.events.admit(this, agent, msg.previousSessionId ?? null);
    if (this.state !== "authenticating") return;
    if (!admission.admitted) {
      this.close(admission.code, admission.reason);
      return;
    }
    if (this.#authTimer) clearTimeout(this.#authTimer);
    this.peer = msg.settings;
    this.#rules.peerWindow(msg.settings.connectionWindowBytes);
    this.state = "ready";
    this.#sendControl(ControlKind.WELCOME, {
      agentId: agent.id,
      sessionId: this.sessionId,
      serverTimeMs: Date.now(),
      heartbeatIntervalMs: this.settings.heartbeatIntervalMs,
      settings: this.#ownSettings(),
    });
    this.#startHeartbeat();
    this.log.info("tunnel.ready", { agentId: agent.id, agentVersion: msg.agentVersion, remoteIp: this.remoteIp });
    this.events.ready(this, agent);
  }

  #startHeartbeat(): void {
    this.#heartbeatTimer = setInterval(() => {
      if (Date.now() - this.#lastFrameAt > this.settings.heartbeatTimeoutMs) {
        this.close(CloseCode.HEARTBEAT_TIMEOUT, "agent missed its heartbeats");
        return;
      }
      const data = randomBytes(8);
      this.#pingSentAt.clear();
      this.#pingSentAt.set(toBase64Url(data), Date.now());
      this.send(encodePing(data));
    }, this.settings.heartbeatIntervalMs);
    this.#heartbeatTimer.unref();
  }

  /** Used on shutdown: tell the agent to reconnect elsewhere. */
  goAway(): void {
    this.drain(GoAwayCode.SHUTDOWN, "hub shutting down");
  }
}
