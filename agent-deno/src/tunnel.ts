/**
 * The agent's side of the reverse tunnel: dial out to the hub (pinned TLS), answer the challenge, announce
 * the inventory, serve streams, answer heartbeats, and reconnect with full-jitter backoff. Listens on no port.
 */
// @ts-types="./ws.d.ts"
import WebSocket from "ws";
import {
  AUTH_NONCE_BYTES,
  challenge as challengeSchema,
  CLOSE_GRACE_MS,
  CloseCode,
  CONCURRENT_STREAMS_MAX_DEFAULT,
  CONNECTION_WINDOW_BYTES_DEFAULT,
  ControlKind,
  decodeMessage,
  FrameBatcher,
  encodeControl,
  encodeGoAway,
  encodePong,
  encodeReset,
  FRAME_BYTES_MAX,
  FrameType,
  GoAwayCode,
  HEARTBEAT_TIMEOUT_MS_DEFAULT,
  jsonBytes,
  parseJson,
  priceTable as priceTableSchema,
  requestHead,
  ResetCode,
  SessionRules,
  WindowGrowth,
  signAuth,
  toBase64Url,
  STREAM_WINDOW_BYTES_DEFAULT,
  TUNNEL_UPGRADE_TIMEOUT_MS,
  welcome as welcomeSchema,
  chainTail as chainTailSchema,
  receiptAck as receiptAckSchema,
  settlementStatement as settlementSchema,
  RECEIPTS_PER_MESSAGE_MAX,
  egressProbe,
  type EgressProbe,
  type EndpointReport,
  type Frame,
  type Inventory,
  type Settings,
  type UpdateAvailable,
  updateAvailable as updateAvailableSchema,
  agentConfig as agentConfigSchema,
  type RateState,
} from "../../protocol/src/mod.ts";
import type { Identity } from "./config.ts";
import type { Log } from "./log.ts";
import { connectPinned } from "./pinned_tls.ts";
import type { PriceStore } from "./prices.ts";
import { checkForward, isBatchesCall, isFilesCall, isMessageBatchCreate, type ForwardedRequest } from "./forward_rules.ts";
import { familyOf, officialOrigin, upstreamUrl, type Upstream } from "./providers.ts";
import { type EndpointGuard, EndpointReportThrottle } from "./endpoint_check.ts";
import { pemOf, runEgressProbe } from "./egress_probe.ts";
import { AgentStream, type StreamOutcome } from "./stream.ts";
import { RateGovernor, type RateTicket } from "./rate_governor.ts";
import type { StatusWriter } from "./status.ts";
import type { ReceiptClerk } from "./receipts.ts";
import { AGENT_VERSION } from "./version.ts";

export { AGENT_VERSION };
export const TUNNEL_PATH = "/agent/v1/tunnel";

/** Reconnect backoff: full jitter between 0 and min(cap, base × 2^attempt). */
export const RECONNECT_BASE_MS = 250;
export const RECONNECT_CAP_MS = 30_000;

/** RATE_STATE reports go to the hub at most this often, ms (a change meanwhile goes at the end of the interval). */
export const RATE_STATE_INTERVAL_MS_MIN = 1_000;

/** Close codes after which reconnecting cannot help: the agent stops. */
const FATAL_CLOSE_CODES = new Set<number>([CloseCode.AGENT_REVOKED, CloseCode.UNKNOWN_AGENT]);

/**
 * After DUPLICATE_IDENTITY (another agent with this identity is connected) the agent waits long, so a copy
 * never flaps with the live agent: a random delay in [½, 1] × min(cap, base × 2^(refusals − 1)).
 */
export const DUPLICATE_RETRY_BASE_MS = 30_000;
export const DUPLICATE_RETRY_CAP_MS = 300_000;

/**
 * After AGENT_SUSPENDED (an administrator suspended this agent) the agent keeps running and asks again after
 * `suspendedRetryMs` (config.json `suspendedRetrySeconds`, default 5 minutes), jittered to [½, 1] of it so a
 * hub's suspended agents do not all ask at once. Once reinstated it connects and serves.
 */
export const SUSPENDED_RETRY_MS_DEFAULT = 300_000;

/** The wait before asking again after AGENT_SUSPENDED, ms. */
export function suspendedRetryDelayMs(retryMs: number = SUSPENDED_RETRY_MS_DEFAULT, random: () => number = Math.random): number {
  return Math.round(retryMs * (0.5 + random() / 2));
}

/** The wait after the n-th consecutive DUPLICATE_IDENTITY refusal (n ≥ 1), ms. */
export function duplicateRetryDelayMs(refusals: number, random: () => number = Math.random): number {
  const ceiling = Math.min(DUPLICATE_RETRY_CAP_MS, DUPLICATE_RETRY_BASE_MS * 2 ** Math.min(Math.max(refusals - 1, 0), 20));
  return Math.round(ceiling * (0.5 + random() / 2));
}

export interface TunnelOptions {
  identity: Identity;
  privateKey: CryptoKey;
  upstreams: Upstream[];
  inventory: Inventory;
  concurrentStreamsMax: number;
  devOrigin: string | null;
  /** Checks each provider call's endpoint by address (endpoint_check.ts); null: no check (development upstream). */
  endpoints?: EndpointGuard | null;
  /** How often a forbidden host is reported to the hub (default: one report per host per ENDPOINT_REPORT_INTERVAL_MS). */
  endpointReports?: EndpointReportThrottle;
  log: Log;
  settings?: Partial<Settings>;
  /** Stop signal: closes the tunnel after a GOAWAY and ends `run()`. */
  signal?: AbortSignal;
  /** Called whenever the tunnel becomes ready (for tests and status output). */
  onReady?: (sessionId: string) => void;
  /** Where pushed price tables are kept; without one they are acknowledged and not kept. */
  prices?: PriceStore;
  /** The status file `./wellspring-agent status` reads (connection, calls served today). */
  status?: StatusWriter;
  /** Signs and keeps a receipt for every stream the hub settles (docs/protocol.md, "Receipts"); none in tests that need none. */
  receipts?: ReceiptClerk;
  /** No edge ledger (development agents only, for benchmarks): AUTH says `ledger: false`, so the hub sends no statements. */
  ledgerOff?: boolean;
  /** The hub said which release to run and which versions it admits (CONTROL UPDATE_AVAILABLE). */
  onUpdateOffer?: (offer: UpdateAvailable) => void;
  /** A provider answered 400: its first bytes, for the context-length error that names a model's window. */
  onProviderError?: (provider: string, model: string, body: string) => void;
  /** How long to wait before asking again while suspended (close AGENT_SUSPENDED), ms; default SUSPENDED_RETRY_MS_DEFAULT. */
  suspendedRetryMs?: number;
  /** The agent's own rate limits for its provider keys (default: a new one, auto mode until the hub's CONFIG says otherwise). */
  rate?: RateGovernor;
}

export class FatalTunnelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FatalTunnelError";
  }
}

/** The hub refuses this agent's version (close UPDATE_REQUIRED): the launcher updates it, then starts it again. */
export class UpdateRequiredError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UpdateRequiredError";
  }
}

interface Session {
  ws: WebSocket;
  /** Frames of one turn leave as one message (protocol/src/batch.ts). */
  batch: FrameBatcher;
  state: "challenge" | "ready" | "closed";
  streams: Map<number, AgentStream>;
  /** Connection-level flow control and stream-id rules, the same as the hub's (protocol/src/session.ts). */
  rules: SessionRules;
  /** Request-body windows of streams whose provider reads fast grow from this budget (protocol/src/flow.ts). */
  windowGrowth: WindowGrowth;
  peer: Settings | null;
  lastFrameAt: number;
  heartbeatTimeoutMs: number;
  draining: boolean;
  /** The hub's certificate (PEM) as the pinned connection saw it: what the egress probe's fetch trusts. */
  hubCertPem: string | null;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

export class Tunnel {
  readonly #o: TunnelOptions;
  readonly #own: Settings;
  #session: Session | null = null;
  /** The session id of the last WELCOME: sent with the next AUTH so the hub lets this process take its place. */
  #lastSessionId: string | null = null;
  #modelIndex = new Map<string, Upstream>();
  readonly #rate: RateGovernor;
  readonly #tickets = new Map<AgentStream, RateTicket>();
  readonly #endpointReports: EndpointReportThrottle;
  /** The last RATE_STATE sent (its limits and whether the agent had room), and when; a trailing report's timer. */
  #rateSent: { key: string; atMs: number } | null = null;
  #rateTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(options: TunnelOptions) {
    this.#endpointReports = options.endpointReports ?? new EndpointReportThrottle();
    this.#o = options;
    this.#rate = options.rate ?? new RateGovernor();
    this.#own = {
      streamWindowBytes: options.settings?.streamWindowBytes ?? STREAM_WINDOW_BYTES_DEFAULT,
      connectionWindowBytes: options.settings?.connectionWindowBytes ?? CONNECTION_WINDOW_BYTES_DEFAULT,
      concurrentStreamsMax: Math.min(options.concurrentStreamsMax, options.settings?.concurrentStreamsMax ?? CONCURRENT_STREAMS_MAX_DEFAULT),
    };
    for (const u of options.upstreams) {
      for (const m of u.models) {
        const key = `${familyOf(u.provider)}:${m}`;
        if (!this.#modelIndex.has(key)) this.#modelIndex.set(key, u);
      }
    }
  }

  /** Connects and serves until stopped or a fatal refusal; reconnects after any other loss. */
  async run(): Promise<void> {
    const { log, signal } = this.#o;
    let attempt = 0;
    let duplicateRefusals = 0;
    while (!signal?.aborted) {
      let becameReady = false;
      let code: number | null = null;
      try {
        code = await this.#connectOnce(() => {
          becameReady = true;
          attempt = 0;
          duplicateRefusals = 0;
        });
        if (FATAL_CLOSE_CODES.has(code)) throw new FatalTunnelError(`Cannot serve: the hub refused this agent (close code ${code})`);
        if (code === CloseCode.DEVELOPMENT_AGENT_REFUSED)
          throw new FatalTunnelError(
            `Cannot serve: the hub runs in production and refuses an agent with a development upstream (close code ${code}); start the agent without --dev-upstream`,
          );
        if (code === CloseCode.UPDATE_REQUIRED)
          throw new UpdateRequiredError(
            `Cannot serve: the hub requires a newer agent than ${AGENT_VERSION} (close code ${code}); the launcher updates it when a signed release is available`,
          );
      } catch (error) {
        if (error instanceof FatalTunnelError || error instanceof UpdateRequiredError) throw error;
        log.warn("tunnel.connect_failed", { error: error as Error, attempt });
      }
      if (signal?.aborted) break;
      if (code === CloseCode.AGENT_SUSPENDED) {
        const delay = suspendedRetryDelayMs(this.#o.suspendedRetryMs);
        log.error("tunnel.suspended", {
          agentId: this.#o.identity.agentId,
          retryInMs: delay,
          message: `Cannot serve: an administrator suspended this agent (close code ${code}); it keeps running and asks the hub again in ${Math.round(delay / 1000)} s.`,
        });
        await sleep(delay, signal);
        continue;
      }
      if (code === CloseCode.DUPLICATE_IDENTITY) {
        duplicateRefusals++;
        const delay = duplicateRetryDelayMs(duplicateRefusals);
        log.error("tunnel.duplicate_identity", {
          agentId: this.#o.identity.agentId,
          retryInMs: delay,
          message:
            `Cannot serve: another agent is running with this identity (${this.#o.identity.agentId}) and is connected to the hub; only one may run. ` +
            "Stop the other copy (a copied data folder runs the same agent), or enroll this machine as a new agent. Retrying later.",
        });
        await sleep(delay, signal);
        continue;
      }
      const delay = becameReady ? Math.random() * RECONNECT_BASE_MS : Math.random() * Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** attempt);
      attempt = Math.min(attempt + 1, 20);
      log.info("tunnel.reconnecting", { inMs: Math.round(delay) });
      await sleep(delay, signal);
    }
  }

  /** One connection's life. Resolves with the close code. */
  async #connectOnce(onReady: () => void): Promise<number> {
    const { identity, log } = this.#o;
    const origin = new URL(identity.hubUrl);
    const socket = await connectPinned(origin, identity.pins);
    const hubCert = (socket.getPeerCertificate(false) as { raw?: Uint8Array } | null)?.raw;
    // The transport is the pinned TLS socket handed over by createConnection; the ws:// scheme only stops
    // ws from opening a TLS connection (and consulting the system CA store) of its own.
    const wsUrl = `ws://${origin.host}${TUNNEL_PATH}`;
    const ws = new WebSocket(wsUrl, {
      createConnection: () => socket,
      maxPayload: FRAME_BYTES_MAX,
      perMessageDeflate: false,
      handshakeTimeout: TUNNEL_UPGRADE_TIMEOUT_MS,
      // An all-zero masking key: ws then skips masking here and unmasking at the hub, byte loops in
      // JavaScript that cost more CPU than anything else on a bulk transfer (docs/protocol.md, "Transport").
      generateMask: (mask) => mask.fill(0),
    });
    ws.binaryType = "nodebuffer";
    const session: Session = {
      ws,
      batch: new FrameBatcher((message) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(message);
      }),
      state: "challenge",
      streams: new Map(),
      rules: new SessionRules(this.#own.connectionWindowBytes),
      windowGrowth: new WindowGrowth(),
      peer: null,
      lastFrameAt: Date.now(),
      heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS_DEFAULT,
      draining: false,
      hubCertPem: hubCert && hubCert.length > 0 ? pemOf(hubCert) : null,
    };
    this.#session = session;
    return await new Promise<number>((resolve) => {
      const watchdog = setInterval(() => {
        if (Date.now() - session.lastFrameAt > session.heartbeatTimeoutMs) {
          log.warn("tunnel.hub_silent", { ms: Date.now() - session.lastFrameAt });
          this.#close(session, CloseCode.HEARTBEAT_TIMEOUT, "hub missed its heartbeats");
          ws.terminate();
        }
      }, 1000);
      const onStop = () => {
        if (session.state === "closed") return;
        session.draining = true;
        this.#send(session, encodeGoAway(session.rules.highestStreamId, GoAwayCode.SHUTDOWN, "agent stopping"));
        if (session.streams.size === 0) this.#close(session, CloseCode.NORMAL, "agent stopping");
      };
      this.#o.signal?.addEventListener("abort", onStop, { once: true });
      ws.on("message", (data: Uint8Array, isBinary: boolean) => {
        if (!isBinary) {
          this.#close(session, CloseCode.PROTOCOL_ERROR, "text messages are not part of the protocol");
          return;
        }
        session.lastFrameAt = Date.now();
        // One message may carry several frames; a frame that closes the session stops the rest.
        for (const result of decodeMessage(data)) {
          if (session.state === "closed") return;
          if (!result.ok) {
            const v = result.violation;
            log.warn("tunnel.violation", { ...v });
            if (v.scope === "connection") this.#close(session, v.closeCode, v.message);
            else this.#resetStream(session, v.streamId, v.resetCode, v.message);
            continue;
          }
          try {
            this.#onFrame(session, result.frame, onReady);
          } catch (error) {
            log.error("tunnel.frame_handler_failed", { error: error as Error });
            this.#close(session, CloseCode.INTERNAL, "internal error");
          }
        }
      });
      ws.on("error", (error: Error) => log.warn("tunnel.socket_error", { error }));
      ws.on("close", (code: number, reason: Uint8Array) => {
        clearInterval(watchdog);
        this.#o.signal?.removeEventListener("abort", onStop);
        session.state = "closed";
        session.rules.close();
        for (const s of session.streams.values()) s.abandon();
        session.streams.clear();
        if (this.#session === session) this.#session = null;
        this.#o.status?.disconnected(code);
        log.info("tunnel.closed", { code, reason: new TextDecoder().decode(reason) });
        resolve(code);
      });
    });
  }

  #send(session: Session, frame: Uint8Array): void {
    if (session.ws.readyState === WebSocket.OPEN) session.batch.push(frame);
  }

  #close(session: Session, code: number, reason: string): void {
    if (session.state === "closed") return;
    session.state = "closed";
    session.batch.flush(); // what was sent before the close (a GOAWAY, a RESET) goes first
    try {
      session.ws.close(code, reason.slice(0, 120));
    } catch {
      session.ws.terminate();
    }
    setTimeout(() => session.ws.terminate(), CLOSE_GRACE_MS);
  }

  #resetStream(session: Session, streamId: number, code: number, reason: string): void {
    session.streams.get(streamId)?.onReset(reason);
    this.#send(session, encodeReset(streamId, code, reason));
  }

  #onFrame(session: Session, frame: Frame, onReady: () => void): void {
    const { log } = this.#o;
    if (session.state === "challenge") {
      if (frame.type === FrameType.CONTROL && frame.kind === ControlKind.CHALLENGE) {
        void this.#answerChallenge(session, frame.body);
        return;
      }
      if (frame.type === FrameType.CONTROL && frame.kind === ControlKind.WELCOME) {
        const w = parseJson(welcomeSchema, frame.body);
        session.peer = w.settings;
        session.rules.peerWindow(w.settings.connectionWindowBytes);
        session.heartbeatTimeoutMs = Math.max(3 * w.heartbeatIntervalMs, 3000);
        session.state = "ready";
        this.#lastSessionId = w.sessionId;
        log.info("tunnel.ready", { agentId: w.agentId, sessionId: w.sessionId, clockSkewMs: Date.now() - w.serverTimeMs });
        this.#o.receipts?.welcomed(w.serverTimeMs);
        this.#send(session, encodeControl(ControlKind.INVENTORY, jsonBytes(this.#o.inventory)));
        this.#sendClaims(session);
        this.#rateSent = null;
        this.#reportRate(session);
        this.#o.status?.connected(w.sessionId);
        onReady();
        this.#o.onReady?.(w.sessionId);
        return;
      }
      if (frame.type === FrameType.PING) {
        this.#send(session, encodePong(frame.data));
        return;
      }
      this.#close(session, CloseCode.PROTOCOL_ERROR, "expected the handshake first");
      return;
    }
    switch (frame.type) {
      case FrameType.OPEN:
        this.#onOpen(session, frame.streamId, frame.payload);
        return;
      case FrameType.DATA: {
        const verdict = session.rules.data(frame.payload.length);
        if (!verdict.ok) {
          this.#close(session, CloseCode.FLOW_CONTROL_ERROR, verdict.reason);
          return;
        }
        if (verdict.reply) this.#send(session, verdict.reply);
        const stream = this.#streamFor(session, frame.streamId);
        if (stream && !stream.onData(frame.payload)) {
          this.#resetStream(session, frame.streamId, ResetCode.FLOW_CONTROL_ERROR, "request body exceeded the window or followed END");
        }
        return;
      }
      case FrameType.END:
        this.#streamFor(session, frame.streamId)?.onEnd();
        return;
      case FrameType.RESET:
        this.#streamFor(session, frame.streamId)?.onReset(`code ${frame.code}`);
        return;
      case FrameType.WINDOW:
        if (frame.streamId === 0) {
          const verdict = session.rules.window(frame.increment);
          if (!verdict.ok) this.#close(session, CloseCode.FLOW_CONTROL_ERROR, verdict.reason);
        } else {
          const stream = this.#streamFor(session, frame.streamId);
          if (stream && !stream.onWindow(frame.increment)) this.#resetStream(session, frame.streamId, ResetCode.FLOW_CONTROL_ERROR, "window overflow");
        }
        return;
      case FrameType.PING:
        this.#send(session, encodePong(frame.data));
        return;
      case FrameType.PONG:
        return;
      case FrameType.GOAWAY:
        log.info("tunnel.hub_goaway", { code: frame.code, reason: frame.reason });
        session.draining = true;
        if (session.streams.size === 0) this.#close(session, CloseCode.NORMAL, "hub asked us to go away");
        return;
      case FrameType.RESPONSE:
        this.#close(session, CloseCode.PROTOCOL_ERROR, "the hub may not send RESPONSE");
        return;
      case FrameType.CONTROL:
        if (frame.kind === ControlKind.PRICE_TABLE) {
          this.#onPriceTable(session, frame.body);
          return;
        }
        if (frame.kind === ControlKind.UPDATE_AVAILABLE) {
          this.#onUpdateAvailable(session, frame.body);
          return;
        }
        if (frame.kind === ControlKind.CONFIG) {
          this.#onConfig(session, frame.body);
          return;
        }
        if (frame.kind === ControlKind.EGRESS_PROBE) {
          this.#onEgressProbe(session, frame.body);
          return;
        }
        if (frame.kind === ControlKind.SETTLEMENT || frame.kind === ControlKind.RECEIPT_ACK || frame.kind === ControlKind.CHAIN_TAIL) {
          this.#onLedgerControl(session, frame.kind, frame.body);
          return;
        }
        // Reserved control kinds this agent version does not implement are ignored (docs/protocol.md).
        if (frame.kind === ControlKind.CHALLENGE || frame.kind === ControlKind.WELCOME) {
          this.#close(session, CloseCode.PROTOCOL_ERROR, "handshake message after the handshake");
        }
        return;
    }
  }

  #onPriceTable(session: Session, body: Uint8Array): void {
    let table;
    try {
      table = parseJson(priceTableSchema, body);
    } catch (error) {
      this.#close(session, CloseCode.PROTOCOL_ERROR, `bad price table: ${(error as Error).message}`);
      return;
    }
    const held = this.#o.prices ? this.#o.prices.accept(table) : Promise.resolve(table.ver);
    void held.then((ver) => {
      this.#o.status?.prices(ver);
      this.#send(session, encodeControl(ControlKind.PRICE_ACK, jsonBytes({ ver })));
    });
  }

  /** The owner's rate mode and limits (CONFIG): held from the next request on, and reported back. */
  #onConfig(session: Session, body: Uint8Array): void {
    let config;
    try {
      config = parseJson(agentConfigSchema, body);
    } catch (error) {
      this.#close(session, CloseCode.PROTOCOL_ERROR, `bad config: ${(error as Error).message}`);
      return;
    }
    this.#rate.configure(config);
    this.#o.log.info("agent.rate_config", { ...config });
    this.#reportRate(session);
  }

  /**
   * Tells the hub the limits the agent holds and whether it has room (RATE_STATE), when they changed since the
   * last report; at most every RATE_STATE_INTERVAL_MS_MIN (a change meanwhile is sent at the end of it).
   */
  #reportRate(session: Session): void {
    if (session.state !== "ready") return;
    const state: RateState = this.#rate.state();
    const key = `${state.rateMode}:${state.rpm}:${state.tpm}:${state.concurrency}:${state.retryAfterMs > 0}`;
    if (this.#rateSent?.key === key) return;
    const waitMs = this.#rateSent === null ? 0 : this.#rateSent.atMs + RATE_STATE_INTERVAL_MS_MIN - Date.now();
    if (waitMs > 0) {
      this.#rateTimer ??= setTimeout(() => {
        this.#rateTimer = null;
        if (this.#session === session) this.#reportRate(session);
      }, waitMs);
      return;
    }
    this.#rateSent = { key, atMs: Date.now() };
    this.#send(session, encodeControl(ControlKind.RATE_STATE, jsonBytes(state)));
  }

  /**
   * SETTLEMENT → a signed receipt (RECEIPT); RECEIPT_ACK → kept; CHAIN_TAIL → compared and answered, and the
   * receipts the hub lacks claimed again.
   */
  #onLedgerControl(session: Session, kind: number, body: Uint8Array): void {
    if (kind === ControlKind.SETTLEMENT) {
      // The tokens the request used replace its estimate in the agent's TPM (expert mode).
      try {
        const { requestId, chargedUsage } = parseJson(settlementSchema, body);
        this.#rate.settle(requestId, chargedUsage.inputTokens + chargedUsage.outputTokens);
      } catch {
        // refused below, with the connection
      }
    }
    const clerk = this.#o.receipts;
    if (!clerk) return;
    try {
      if (kind === ControlKind.SETTLEMENT) {
        const statement = parseJson(settlementSchema, body);
        void clerk.settle(statement).then(
          (outcome) => {
            if ("signed" in outcome)
              this.#send(
                session,
                encodeControl(
                  ControlKind.RECEIPT,
                  jsonBytes({ receipts: [{ body: toBase64Url(outcome.signed.body), signature: toBase64Url(outcome.signed.signature) }] }),
                ),
              );
          },
          (error: unknown) => this.#o.log.error("ledger.receipt_not_kept", { requestId: statement.requestId, error: error as Error }),
        );
      } else if (kind === ControlKind.RECEIPT_ACK) {
        clerk.acknowledged(parseJson(receiptAckSchema, body));
      } else {
        const hub = parseJson(chainTailSchema, body);
        const own = clerk.compareTail(hub);
        this.#send(session, encodeControl(ControlKind.CHAIN_TAIL, jsonBytes(own)));
        // The hub is behind: receipts it refused for now ("retry") or never got are claimed again, in order.
        if (hub.seq < own.seq) this.#sendClaims(session);
      }
    } catch (error) {
      this.#close(session, CloseCode.PROTOCOL_ERROR, `bad ledger message: ${(error as Error).message}`);
    }
  }

  /** After a reconnect: receipts the hub never acknowledged go again (CLAIM); the hub settles each once. */
  #sendClaims(session: Session): void {
    const claims = this.#o.receipts?.claims() ?? [];
    for (let i = 0; i < claims.length; i += RECEIPTS_PER_MESSAGE_MAX) {
      const receipts = claims.slice(i, i + RECEIPTS_PER_MESSAGE_MAX).map((r) => ({ body: toBase64Url(r.body), signature: toBase64Url(r.signature) }));
      this.#send(session, encodeControl(ControlKind.CLAIM, jsonBytes({ receipts })));
    }
  }

  #onUpdateAvailable(session: Session, body: Uint8Array): void {
    let offer: UpdateAvailable;
    try {
      offer = parseJson(updateAvailableSchema, body);
    } catch (error) {
      this.#close(session, CloseCode.PROTOCOL_ERROR, `bad update offer: ${(error as Error).message}`);
      return;
    }
    this.#o.log.info("agent.update_offered", { latestVersion: offer.latestVersion, minimumVersion: offer.minimumVersion, running: AGENT_VERSION });
    this.#o.status?.offered({ latestVersion: offer.latestVersion, minimumVersion: offer.minimumVersion });
    this.#o.onUpdateOffer?.(offer);
  }

  #streamFor(session: Session, streamId: number): AgentStream | undefined {
    const stream = session.streams.get(streamId);
    if (stream) return stream;
    if (session.rules.neverOpened(streamId)) this.#close(session, CloseCode.PROTOCOL_ERROR, `frame for stream ${streamId} that was never opened`);
    return undefined;
  }

  #onOpen(session: Session, streamId: number, payload: Uint8Array): void {
    if (!session.rules.open(streamId)) {
      this.#close(session, CloseCode.PROTOCOL_ERROR, `stream id ${streamId} is not a new odd id`);
      return;
    }
    if (session.draining) {
      this.#send(session, encodeReset(streamId, ResetCode.SHUTTING_DOWN, "agent is stopping"));
      return;
    }
    if (this.#o.receipts?.outOfSync) {
      this.#send(session, encodeReset(streamId, ResetCode.REFUSED, "agent ledger out of sync with the hub"));
      return;
    }
    if (session.streams.size >= this.#own.concurrentStreamsMax) {
      this.#send(session, encodeReset(streamId, ResetCode.STREAM_LIMIT, "agent is at its stream limit"));
      return;
    }
    let head;
    try {
      head = parseJson(requestHead, payload);
    } catch (error) {
      this.#send(session, encodeReset(streamId, ResetCode.PROTOCOL_ERROR, `bad request head: ${(error as Error).message}`));
      return;
    }
    let forwarded: ForwardedRequest;
    try {
      forwarded = checkForward(head.api, head.method, head.path);
    } catch (error) {
      this.#o.log.warn("stream.path_forbidden", { requestId: head.requestId, method: head.method, path: head.path.split("?")[0]!.slice(0, 120) });
      this.#send(session, encodeReset(streamId, ResetCode.PATH_FORBIDDEN, (error as Error).message));
      return;
    }
    const upstream = head.model ? this.#modelIndex.get(`${head.api}:${head.model}`) : undefined;
    if (!upstream) {
      this.#send(session, encodeReset(streamId, ResetCode.REFUSED, "model not offered by this agent"));
      return;
    }
    // Files live at OpenAI keys only (an Azure or Anthropic key has no such store behind this path).
    // Batches too: they run at the OpenAI key that keeps their input file.
    const filesCall = isFilesCall(head.api, forwarded.path) || isBatchesCall(head.api, forwarded.path);
    if (filesCall && upstream.provider !== "openai") {
      this.#send(session, encodeReset(streamId, ResetCode.PATH_FORBIDDEN, "files and batches are kept only at an OpenAI key"));
      return;
    }
    // The owner's limits (expert) or what the provider taught (auto): refused before anything reaches the provider.
    // A file upload is no prompt: its bytes count no tokens. Nor is a Message Batch's creation (its requests run
    // later, under the provider's separate batch limits, not the per-minute limits this governor learns).
    const noTokens = filesCall || isMessageBatchCreate(head.api, forwarded.path);
    const admission = this.#rate.admit(head.requestId, noTokens ? 0 : head.bodyBytes, noTokens ? 0 : (head.estimatedTokens ?? null));
    if (!admission.ok) {
      this.#o.log.info("stream.rate_limited", { requestId: head.requestId, limit: admission.limit, retryAfterMs: admission.retryAfterMs });
      this.#send(session, encodeReset(streamId, ResetCode.RATE_LIMITED, `agent rate limit (${admission.limit}); retry in ${admission.retryAfterMs} ms`));
      this.#reportRate(session);
      return;
    }
    const url = upstreamUrl(upstream, forwarded, this.#o.devOrigin);
    const stream = new AgentStream(
      streamId,
      head,
      upstream,
      url,
      {
        send: (f) => this.#send(session, f),
        connectionSendWindow: () => session.rules.send,
        windowGrowth: session.windowGrowth,
        forget: (id) => {
          session.streams.delete(id);
          if (session.draining && session.streams.size === 0) this.#close(session, CloseCode.NORMAL, "drained");
        },
        ended: (s, outcome) => this.#streamEnded(s, outcome),
        providerResponse: (s, status, header) => {
          const ticket = this.#tickets.get(s);
          if (ticket) this.#rate.observe(ticket, status, header);
          this.#reportRate(session);
        },
        checkEndpoint: this.#o.endpoints ? () => this.#checkEndpoint(session, head.requestId, upstream) : undefined,
        providerError: this.#o.onProviderError,
        log: this.#o.log,
      },
      session.peer!.streamWindowBytes,
      this.#own.streamWindowBytes,
    );
    session.streams.set(streamId, stream);
    this.#tickets.set(stream, admission.ticket);
    this.#o.receipts?.started(head.requestId, upstream.provider, stream.startedAt);
    this.#o.status?.forwarded();
    void stream.run();
  }

  /** What the agent serves changed (a model's context window was learned): tells the hub at once, and on every reconnect. */
  announceInventory(inventory: Inventory): void {
    this.#o.inventory = inventory;
    const session = this.#session;
    if (session?.state === "ready") this.#send(session, encodeControl(ControlKind.INVENTORY, jsonBytes(inventory)));
  }

  /** The hub asks where this agent's provider calls leave from: call its echo and answer (egress_probe.ts). */
  #onEgressProbe(session: Session, body: Uint8Array): void {
    let probe: EgressProbe;
    try {
      probe = parseJson(egressProbe, body);
    } catch (error) {
      this.#close(session, CloseCode.PROTOCOL_ERROR, `bad egress probe: ${(error as Error).message}`);
      return;
    }
    if (!session.hubCertPem) return;
    void runEgressProbe(new URL(this.#o.identity.hubUrl).origin, session.hubCertPem, probe.nonce).then(({ answer, error }) => {
      if (error) this.#o.log.warn("egress.echo_failed", { error });
      else this.#o.log.info("egress.echo", { address: answer.address });
      if (session.state === "ready") this.#send(session, encodeControl(ControlKind.EGRESS_PROBE, jsonBytes(answer)));
    });
  }

  /**
   * Resolves the provider's official host and checks the addresses (endpoint_check.ts). A host outside the
   * provider's networks is refused ENDPOINT_FORBIDDEN, logged for the owner and reported to the hub once per
   * verdict (CONTROL ENDPOINT_REPORT).
   */
  async #checkEndpoint(session: Session, requestId: string, upstream: Upstream): Promise<{ code: ResetCode; reason: string } | null> {
    const host = new URL(officialOrigin(upstream)).hostname;
    const verdict = await this.#o.endpoints!.check(upstream.provider, host);
    switch (verdict.kind) {
      case "allowed":
        return null;
      case "unresolved":
        this.#o.log.warn("endpoint.unresolved", { requestId, host, error: verdict.error });
        return { code: ResetCode.UPSTREAM_UNREACHABLE, reason: `cannot resolve ${host}` };
      case "forbidden": {
        if (verdict.fresh) {
          this.#o.log.warn("endpoint.forbidden", {
            requestId,
            host,
            outside: verdict.outside,
            note: `${host} resolves to addresses outside ${upstream.provider}'s networks (hosts file, DNS or proxy?): calls are refused`,
          });
        }
        if (session.state === "ready" && this.#endpointReports.take(`${upstream.provider} ${host}`)) {
          const report: EndpointReport = { requestId, provider: upstream.provider, host, addresses: verdict.addresses, outside: verdict.outside };
          this.#send(session, encodeControl(ControlKind.ENDPOINT_REPORT, jsonBytes(report)));
        }
        return { code: ResetCode.ENDPOINT_FORBIDDEN, reason: `${host} resolves to ${verdict.outside[0]}, outside ${upstream.provider}'s networks` };
      }
    }
  }

  /** The access log line (same requestId as the gateway's `request.end`) and today's count. */
  #streamEnded(s: AgentStream, outcome: StreamOutcome): void {
    const ticket = this.#tickets.get(s);
    if (ticket) {
      this.#rate.release(ticket);
      this.#tickets.delete(s);
    }
    if (outcome === "completed") this.#o.status?.completed();
    this.#o.receipts?.served({ requestId: s.head.requestId, provider: s.upstream.provider, startedAtMs: s.startedAt, endedAtMs: Date.now() });
    this.#o.log.info("stream.end", {
      requestId: s.head.requestId,
      model: s.head.model,
      provider: s.upstream.provider,
      outcome,
      status: s.status,
      upstreamBytes: s.upstreamBytes,
      ms: Date.now() - s.startedAt,
    });
  }

  async #answerChallenge(session: Session, body: Uint8Array): Promise<void> {
    const { identity, privateKey, log } = this.#o;
    let ch;
    try {
      ch = parseJson(challengeSchema, body);
    } catch (error) {
      this.#close(session, CloseCode.PROTOCOL_ERROR, `bad challenge: ${(error as Error).message}`);
      return;
    }
    if (ch.hubId !== identity.hubId) {
      log.error("tunnel.wrong_hub", { expected: identity.hubId, presented: ch.hubId });
      this.#close(session, CloseCode.WRONG_HUB, "this is not the hub the agent enrolled with");
      return;
    }
    if (ch.nonce.length < Math.ceil((AUTH_NONCE_BYTES * 4) / 3)) {
      this.#close(session, CloseCode.PROTOCOL_ERROR, "challenge nonce too short");
      return;
    }
    const timestampMs = Date.now();
    // Sign the hub id we enrolled with, not the one presented: a signature is only good for our hub.
    const signature = await signAuth(privateKey, { hubId: identity.hubId, sessionId: ch.sessionId, nonce: ch.nonce, timestampMs, agentId: identity.agentId });
    this.#send(
      session,
      encodeControl(
        ControlKind.AUTH,
        jsonBytes({
          agentId: identity.agentId,
          sessionId: ch.sessionId,
          nonce: ch.nonce,
          timestampMs,
          signature,
          agentVersion: AGENT_VERSION,
          settings: this.#own,
          ...(this.#lastSessionId ? { previousSessionId: this.#lastSessionId } : {}),
          ...(this.#o.devOrigin !== null ? { development: true } : {}),
          ...(this.#o.ledgerOff ? { ledger: false } : {}),
        }),
      ),
    );
  }
}
