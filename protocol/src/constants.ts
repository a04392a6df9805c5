/**
 * Wellspring tunnel protocol — constants, limits and codes.
 *
 * Every limit carries its unit in its name. Every code is listed in docs/protocol.md.
 * This module is runtime-neutral (Node and Deno): Web APIs only.
 */

/** Wire version carried in byte 0 of every frame. A peer refuses any other value. */
export const PROTOCOL_VERSION = 1;

/** Fixed frame header: version u8, type u8, flags u8, reserved u8, streamId u32, payloadLength u32. */
export const FRAME_HEADER_BYTES = 12;

/** Largest DATA payload a sender may put in one frame. Bodies are chunked to this size. */
export const DATA_PAYLOAD_BYTES_MAX = 64 * 1024;
/** Largest OPEN / RESPONSE / END payload (JSON head or trailer). */
export const HEAD_PAYLOAD_BYTES_MAX = 64 * 1024;
/** Largest CONTROL payload (price tables, receipt batches). */
export const CONTROL_PAYLOAD_BYTES_MAX = 1024 * 1024;
/** Largest RESET / GOAWAY reason, UTF-8 bytes. */
export const REASON_BYTES_MAX = 256;
/** Largest frame of any kind; the WebSocket maxPayload is set to this. */
export const FRAME_BYTES_MAX = FRAME_HEADER_BYTES + CONTROL_PAYLOAD_BYTES_MAX;

/** Receive window each side grants per stream at open (bytes of DATA payload). */
export const STREAM_WINDOW_BYTES_DEFAULT = 256 * 1024;
/** Receive window each side grants for the whole connection (bytes of DATA payload). */
export const CONNECTION_WINDOW_BYTES_DEFAULT = 16 * 1024 * 1024;
/** A window may never grow past this (RFC 9113 uses the same bound). */
export const WINDOW_BYTES_MAX = 2 ** 31 - 1;
/** Streams the hub may have open on one agent connection at once. */
export const CONCURRENT_STREAMS_MAX_DEFAULT = 1024;
/** Largest stream id; ids are never reused on one connection. */
export const STREAM_ID_MAX = 2 ** 32 - 1;

/** After sending a close frame, a peer that has not closed the socket within this long is cut off, ms. */
export const CLOSE_GRACE_MS = 2_000;
/** The WebSocket upgrade of a tunnel must complete within this long, ms. */
export const TUNNEL_UPGRADE_TIMEOUT_MS = 10_000;
/** Heartbeat: the hub pings at this interval; a peer silent for `HEARTBEAT_TIMEOUT_MS` is dropped. */
export const HEARTBEAT_INTERVAL_MS_DEFAULT = 15_000;
export const HEARTBEAT_TIMEOUT_MS_DEFAULT = 45_000;
/**
 * One live connection per agent identity: when a new connection authenticates as an agent whose session
 * lives on the same gateway, the hub pings that session and must get the PONG within this time, or the
 * old session is presumed half-open and replaced. A session that answers keeps the identity.
 */
export const PRESENCE_PROBE_TIMEOUT_MS_DEFAULT = 5_000;
/** Handshake: the agent must answer the challenge within this time. */
export const AUTH_TIMEOUT_MS = 10_000;
/** Largest difference between the agent's signed timestamp and the hub's clock. */
export const AUTH_CLOCK_SKEW_MS_MAX = 60_000;
/** Challenge nonce length. */
export const AUTH_NONCE_BYTES = 32;

export const FrameType = {
  /** hub → agent: open a stream with a request head (JSON). */
  OPEN: 0x01,
  /** agent → hub: response head (status, headers; JSON). */
  RESPONSE: 0x02,
  /** either way: body bytes, counted against flow-control windows. */
  DATA: 0x03,
  /** either way: the sender's half of the stream is complete; optional JSON trailer. */
  END: 0x04,
  /** either way: abort the stream with a code (u32) and a UTF-8 reason. */
  RESET: 0x05,
  /** either way: grant more window (u32 increment); stream 0 = the connection. */
  WINDOW: 0x06,
  /** either way: 8 opaque bytes, answered by PONG with the same bytes. */
  PING: 0x07,
  PONG: 0x08,
  /** either way, stream 0: no new streams; lastStreamId u32, code u32, reason. */
  GOAWAY: 0x09,
  /** either way, stream 0: control message, kind u16 + JSON body. */
  CONTROL: 0x0a,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Stream-level error codes carried by RESET. */
export const ResetCode = {
  /** The hub's client went away, or the user stopped the generation. */
  CANCEL: 1,
  PROTOCOL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  /** The agent will not serve this stream (paused, model not offered, over its own limit). */
  REFUSED: 4,
  /** The agent could not reach the provider. */
  UPSTREAM_UNREACHABLE: 5,
  /** The provider did not answer in time, or a stream stalled past its idle limit. */
  UPSTREAM_TIMEOUT: 6,
  INTERNAL: 7,
  /** The request would go to an endpoint that is not an official provider endpoint. */
  ENDPOINT_FORBIDDEN: 8,
  /** Too many concurrent streams on this connection. */
  STREAM_LIMIT: 9,
  /** The upstream response stream broke after it started. */
  UPSTREAM_RESET: 10,
  /** The agent is shutting down. */
  SHUTTING_DOWN: 11,
  /** The agent does not forward this method and path (not on its provider's inference allowlist). */
  PATH_FORBIDDEN: 12,
  /**
   * The request body does not say what its head says (another `model`), repeats a routing field, or is not a
   * body the agent can read: refused before the provider has it whole.
   */
  BODY_REFUSED: 13,
  /** The agent's own rate limit for its provider key has no room now: the hub tries another agent. */
  RATE_LIMITED: 14,
  /**
   * Gateway link only: the gateway a request was forwarded to does not hold the named agent's connection (it
   * moved, or is at its stream limit there). The forwarding gateway tries another agent.
   */
  AGENT_NOT_HERE: 15,
  /** Gateway link only: the agent's connection at the gateway a request was forwarded to was lost. */
  AGENT_LOST: 16,
} as const;
export type ResetCode = (typeof ResetCode)[keyof typeof ResetCode];

/**
 * WebSocket close codes (application range 4000–4999). A connection-level violation closes the
 * socket with one of these; the close reason is a short human text.
 */
export const CloseCode = {
  /** RFC 6455 normal closure: the peer asked to go away, or drained after a GOAWAY. */
  NORMAL: 1000,
  PROTOCOL_ERROR: 4000,
  UNSUPPORTED_VERSION: 4001,
  FRAME_TOO_LARGE: 4002,
  UNKNOWN_FRAME_TYPE: 4003,
  FLOW_CONTROL_ERROR: 4004,
  UNKNOWN_CONTROL_KIND: 4005,
  AUTH_FAILED: 4010,
  AUTH_TIMEOUT: 4011,
  AGENT_REVOKED: 4012,
  CLOCK_SKEW: 4013,
  WRONG_HUB: 4014,
  UNKNOWN_AGENT: 4015,
  /** Another connection with this agent's identity is live: only one may serve. The agent backs off long. */
  DUPLICATE_IDENTITY: 4016,
  HEARTBEAT_TIMEOUT: 4020,
  GOING_AWAY: 4030,
  REPLACED: 4031,
  /** The agent's version is below the oldest the hub admits: it must update (the launcher does) before it serves. */
  UPDATE_REQUIRED: 4032,
  /**
   * The agent sends provider calls to a development upstream (`--dev-upstream`, AUTH `development: true`) and this
   * hub was not started in development mode (`HUB_DEVELOPMENT=1`): refused for good.
   */
  DEVELOPMENT_AGENT_REFUSED: 4033,
  /**
   * An administrator suspended the agent: it keeps running and asks again after a long wait (the agent's
   * `suspendedRetrySeconds`, default 300), and serves again once reinstated. A revoked agent gets AGENT_REVOKED.
   */
  AGENT_SUSPENDED: 4034,
  /** Gateway link only: the first frame was not the peer's PEER_SETTINGS. */
  PEER_SETTINGS_MISSING: 4040,
  INTERNAL: 4050,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** GOAWAY codes. */
export const GoAwayCode = {
  /** Orderly shutdown or restart: reconnect (to any hub) and carry on. */
  SHUTDOWN: 0,
  /** A newer connection of the same agent replaced this one. */
  REPLACED: 1,
  /** The agent must update before reconnecting. */
  UPDATE_REQUIRED: 2,
} as const;

/**
 * CONTROL kinds. Kinds 1–4 are used by the handshake and inventory. The others are reserved for the
 * accounting, limits, trust and update subsystems; a peer that does not implement a reserved kind ignores it.
 * Any kind not listed here closes the connection with UNKNOWN_CONTROL_KIND.
 */
export const ControlKind = {
  CHALLENGE: 1,
  AUTH: 2,
  WELCOME: 3,
  INVENTORY: 4,
  PRICE_TABLE: 5,
  PRICE_ACK: 6,
  RECEIPT: 7,
  RECEIPT_ACK: 8,
  CHAIN_TAIL: 9,
  CLAIM: 10,
  /** Hub → agent: the owner's rate mode and, in expert mode, the limits the agent holds its provider key to. */
  CONFIG: 11,
  UPDATE_AVAILABLE: 12,
  EGRESS_PROBE: 13,
  NOTICE: 14,
  /** Agent → hub: the rate limits the agent holds now (auto mode: learnt from the provider) and whether it has room. */
  RATE_STATE: 15,
  /** Hub → agent: how a stream the agent served was settled; the agent signs a receipt for it. */
  SETTLEMENT: 16,
  /** Gateway link only, both ways, first frame: the sender's windows and stream limit (a `Settings`). */
  PEER_SETTINGS: 18,
  /** Gateway link only, forwarding gateway → holding gateway: a settlement statement for the named agent. */
  PEER_SETTLEMENT: 19,
  /**
   * Agent → hub: a provider host resolved to addresses outside that provider's published networks; the agent
   * refused the call with RESET ENDPOINT_FORBIDDEN (docs/protocol.md, "Endpoint checks").
   */
  ENDPOINT_REPORT: 20,
} as const;
export type ControlKind = (typeof ControlKind)[keyof typeof ControlKind];

export const KNOWN_CONTROL_KINDS: ReadonlySet<number> = new Set(Object.values(ControlKind));
