/**
 * JSON payloads: request/response heads (OPEN, RESPONSE, END) and control bodies (CONTROL).
 * Parsed strictly at the boundary; code past it sees typed values.
 */
import { fromUtf8, utf8 } from "./bytes.ts";
import { RECEIPT_END_CAUSES } from "./receipt.ts";
import { ControlKind, PROTOCOL_VERSION, WINDOW_BYTES_MAX } from "./constants.ts";
import { arrayOf, bool, int, nullable, object, oneOf, optional, str, tuple2, type Infer, type Validator } from "./schema.ts";

/** Upstreams an agent may call. Azure OpenAI serves the OpenAI API family. */
export const PROVIDERS = ["openai", "anthropic", "azure"] as const;
export type Provider = (typeof PROVIDERS)[number];
/** API families the gateway exposes; a request names its family, the agent picks the upstream that serves it. */
export const API_FAMILIES = ["openai", "anthropic"] as const;
export type ApiFamily = (typeof API_FAMILIES)[number];

export function apiFamilyOf(provider: Provider): ApiFamily {
  return provider === "anthropic" ? "anthropic" : "openai";
}

const headerList = arrayOf(tuple2(str(256, /^[!#$%&'*+.^_`|~0-9a-z-]+$/), str(8192)), 128);
const id = str(128, /^[A-Za-z0-9_:.-]+$/);
const modelName = str(256, /^[\w.:/@-]+$/);

export const requestHead = object({
  requestId: id,
  method: oneOf(["GET", "POST", "DELETE"] as const),
  /** Path and query as the official API spells them, e.g. `/v1/chat/completions`. */
  path: str(2048, /^\/v1\/[\x21-\x7e]*$/),
  api: oneOf(API_FAMILIES),
  model: nullable(modelName),
  /** Allow-listed request headers, lower-case names. Never credentials. */
  headers: headerList,
  /** Body length when the client sent Content-Length; null when chunked or absent. */
  bodyBytes: nullable(int(0, Number.MAX_SAFE_INTEGER)),
  /**
   * The hub's estimate of the tokens the request counts against a provider's tokens-per-minute limit (input plus
   * the output it asks for), for the agent's TPM bucket; absent from older hubs. The agent uses it only to raise
   * its own estimate (a hub cannot lower what the agent counts).
   */
  estimatedTokens: optional(nullable(int(0, Number.MAX_SAFE_INTEGER))),
});
export type RequestHead = Infer<typeof requestHead>;

export const responseHead = object({
  status: int(100, 599),
  headers: headerList,
});
export type ResponseHead = Infer<typeof responseHead>;

/**
 * Gateway link (OPEN payload): a request forwarded to the gateway that holds `agentId`'s connection, which opens
 * a stream with `head` on that agent.
 */
export const peerOpen = object({ agentId: id, head: requestHead });
export type PeerOpen = Infer<typeof peerOpen>;

/** Optional trailer on the agent's END: what the agent measured for this stream. */
export const endTrailer = object({
  upstreamBytes: optional(int(0, Number.MAX_SAFE_INTEGER)),
  upstreamMs: optional(int(0, Number.MAX_SAFE_INTEGER)),
});
export type EndTrailer = Infer<typeof endTrailer>;

export const settings = object({
  /** Window the sender of these settings grants the peer for each stream. */
  streamWindowBytes: int(1024, WINDOW_BYTES_MAX),
  /** Window the sender of these settings grants the peer for the whole connection. */
  connectionWindowBytes: int(1024, WINDOW_BYTES_MAX),
  /** Streams the sender of these settings accepts at once. */
  concurrentStreamsMax: int(1, 65_536),
});
export type Settings = Infer<typeof settings>;

const b64url = (max: number) => str(max, /^[A-Za-z0-9_-]*$/);

export const challenge = object({
  protocolVersion: int(PROTOCOL_VERSION, PROTOCOL_VERSION),
  hubId: id,
  sessionId: id,
  nonce: b64url(128),
  issuedAtMs: int(0, Number.MAX_SAFE_INTEGER),
  settings,
});
export type Challenge = Infer<typeof challenge>;

export const auth = object({
  agentId: id,
  sessionId: id,
  nonce: b64url(128),
  timestampMs: int(0, Number.MAX_SAFE_INTEGER),
  signature: b64url(128),
  agentVersion: str(64),
  settings,
  /**
   * The session this agent process held before this connection and has since lost (from its last WELCOME);
   * absent on a first connection. The hub lets the new connection take that session's place at once.
   */
  previousSessionId: optional(id),
  /**
   * The agent sends provider calls to a development upstream (a loopback mock or recorder), not the official
   * APIs. A hub not started in development mode refuses it (close 4033). Absent = false.
   */
  development: optional(bool),
  /**
   * `false`: the agent keeps no edge ledger (development only, for measuring the ledger's cost): it signs no
   * receipts, so the hub sends it no statements, tails or re-offers. Only with `development: true`; a hub refuses
   * it otherwise (close 4000). Absent = true.
   */
  ledger: optional(bool),
});
export type Auth = Infer<typeof auth>;

export const welcome = object({
  agentId: id,
  sessionId: id,
  serverTimeMs: int(0, Number.MAX_SAFE_INTEGER),
  heartbeatIntervalMs: int(100, 600_000),
  settings,
});
export type Welcome = Infer<typeof welcome>;

export const inventory = object({
  agentVersion: str(64),
  models: arrayOf(
    object({
      provider: oneOf(PROVIDERS),
      model: modelName,
      /** Context window the agent measured or was told, in tokens; null when unknown. */
      contextTokens: nullable(int(1, 100_000_000)),
    }),
    1024,
  ),
  /** Non-reversible key fingerprints (`kfp_` + hex of an HMAC); never keys. */
  keyFingerprints: arrayOf(str(80, /^kfp_[0-9a-f]{16,64}$/), 64),
  concurrentStreamsMax: int(1, 65_536),
});
export type Inventory = Infer<typeof inventory>;

export const notice = object({ level: oneOf(["info", "warn", "error"] as const), message: str(1024) });
export type Notice = Infer<typeof notice>;

/** Parses a JSON payload against a validator; throws SchemaError / SyntaxError / TypeError. */
export function parseJson<T>(validator: Validator<T>, bytes: Uint8Array): T {
  return validator(JSON.parse(fromUtf8(bytes)) as unknown, "");
}

export function jsonBytes(value: unknown): Uint8Array {
  return utf8(JSON.stringify(value));
}

/** Prices per million tokens as decimal strings of integer micro-units (JSON numbers cannot hold every bigint). */
const micros = str(20, /^(0|[1-9][0-9]{0,18})$/);

/** Largest number of models in one price table. */
export const PRICE_TABLE_ENTRIES_MAX = 4096;

/** Hub → agent: the official price table in force (on connect and on every publication). */
export const priceTable = object({
  ver: int(1, 2_147_483_647),
  publishedAt: str(40),
  prices: arrayOf(
    object({
      provider: oneOf(PROVIDERS),
      model: modelName,
      inputMicrosPerMTok: micros,
      outputMicrosPerMTok: micros,
      cachedInputMicrosPerMTok: micros,
      /** Other billed units: per second of input audio, per image, per million input characters. */
      audioSecondMicros: optional(micros),
      imageMicros: optional(micros),
      characterMicrosPerM: optional(micros),
    }),
    PRICE_TABLE_ENTRIES_MAX,
  ),
});
export type PriceTableMessage = Infer<typeof priceTable>;

/** Agent → hub: the price version the agent now holds. */
export const priceAck = object({ ver: int(1, 2_147_483_647) });
export type PriceAck = Infer<typeof priceAck>;

/** Most receipts in one RECEIPT or CLAIM message (each ≤ 2 KiB of body, 2.7 KiB as base64url: under the control frame's 1 MiB). */
export const RECEIPTS_PER_MESSAGE_MAX = 256;

const count = int(0, Number.MAX_SAFE_INTEGER);
const usage = object({ inputTokens: count, outputTokens: count, cachedInputTokens: count, audioSeconds: count, images: count, characters: count });

/**
 * Hub → agent: how the hub settled a stream this agent served (CONTROL SETTLEMENT, sent once the settlement is
 * durable). The agent checks the owner's earning against its own price table, then signs a receipt for it.
 */
export const settlementStatement = object({
  requestId: id,
  model: modelName,
  reportedUsage: nullable(usage),
  chargedUsage: usage,
  estimated: bool,
  priceVer: int(0, 2_147_483_647),
  tierBps: int(0, 10_000),
  chargeMicros: micros,
  earningMicros: micros,
  endCause: oneOf(RECEIPT_END_CAUSES),
  /**
   * When the hub held the request for dispatch to this agent, UTC epoch ms (sent with statements offered again
   * after a reconnect): lets an agent whose record of the stream was lost in a crash sign it as `dispatched`.
   */
  dispatchedAtMs: optional(count),
  /**
   * The hub's sealed record of the request (base64url of ≤ RECEIPT_HUB_RECORD_BYTES_MAX bytes, opaque to the
   * agent): signed into the receipt (version 3) so the hub's books can be rebuilt from the edges.
   */
  hubRecord: optional(b64url(1366)),
});
export type SettlementStatement = Infer<typeof settlementStatement>;

/** Gateway link (CONTROL PEER_SETTLEMENT): a statement the holding gateway passes on to its agent `agentId`. */
export const peerSettlement = object({ agentId: id, statement: settlementStatement });
export type PeerSettlement = Infer<typeof peerSettlement>;

/** A signed receipt on the wire: its canonical body and the agent's signature, base64url (protocol/src/receipt.ts). */
const wireReceipt = object({ body: b64url(2731), signature: b64url(128) });

/** Agent → hub: new receipts (RECEIPT), or receipts the hub has not acknowledged, re-sent after a reconnect (CLAIM). */
export const receiptBatch = object({ receipts: arrayOf(wireReceipt, RECEIPTS_PER_MESSAGE_MAX) });
export type ReceiptBatch = Infer<typeof receiptBatch>;

/** Why the hub refused a receipt (RECEIPT_ACK `refused`). */
export const RECEIPT_REFUSALS = [
  /** the body, signature, agent or chain link does not verify */
  "invalid",
  /** the hub's chain holds another receipt at this sequence number */
  "fork",
  /** the receipt names a request the hub never dispatched to this agent */
  "not_dispatched",
  /** the receipt's request has another receipt, or its content differs from the hub's settlement */
  "mismatch",
  /** the hub cannot take it now (sequence ahead of its tail, ledger unreachable): send it again later */
  "retry",
] as const;
export type ReceiptRefusal = (typeof RECEIPT_REFUSALS)[number];

/** Hub → agent: one receipt recorded (with the hub's countersignature) or refused. */
export const receiptAck = object({
  seq: int(1, Number.MAX_SAFE_INTEGER),
  /** The receipt hash the hub recorded, base64url. */
  hash: b64url(64),
  countersignature: nullable(b64url(128)),
  refused: nullable(oneOf(RECEIPT_REFUSALS)),
  /**
   * With `mismatch` or `not_dispatched`: the hub kept the receipt in the agent's chain as disputed (not
   * countersigned, flagged, shown to the owner), so later receipts settle; the agent marks it and does not claim it
   * again. Absent = false (the receipt was not kept).
   */
  disputed: optional(bool),
});
export type ReceiptAck = Infer<typeof receiptAck>;

/** Both ways: a side's chain tail (sequence 0 and the genesis hash when empty). */
export const chainTail = object({ seq: count, hash: b64url(64) });
export type ChainTailMessage = Infer<typeof chainTail>;

/** Requests or tokens per minute, or requests in flight, an agent holds its provider key to (null = none). */
const rateLimit = nullable(int(1, 100_000_000));

/**
 * Hub → agent (CONTROL CONFIG): the owner's rate mode. `auto`: the agent learns its provider key's limits from
 * the provider's answers (the limits here are null); `expert`: it never sends more than these.
 */
export const agentConfig = object({
  rateMode: oneOf(["auto", "expert"] as const),
  rpm: rateLimit,
  tpm: rateLimit,
  concurrency: rateLimit,
});
export type AgentConfig = Infer<typeof agentConfig>;

/**
 * Agent → hub (CONTROL RATE_STATE): the limits the agent holds now — in auto mode what it learnt from the
 * provider (null = none known) — and `retryAfterMs`, how long until it has room for another request (0 = room now).
 */
export const rateState = object({
  rateMode: oneOf(["auto", "expert"] as const),
  rpm: rateLimit,
  tpm: rateLimit,
  concurrency: rateLimit,
  retryAfterMs: int(0, 86_400_000),
});
export type RateState = Infer<typeof rateState>;

/** Addresses an ENDPOINT_REPORT carries, the first resolved. */
export const ENDPOINT_REPORT_ADDRESSES_MAX = 16;

/** Agent → hub: the agent refused a call because the provider host resolved outside the provider's networks. */
export const endpointReport = object({
  requestId: id,
  provider: oneOf(PROVIDERS),
  /** The official host that was resolved, e.g. `api.openai.com`. */
  host: str(253, /^[a-z0-9.-]+$/),
  /** What it resolved to (IPv4 or IPv6 text), at most ENDPOINT_REPORT_ADDRESSES_MAX. */
  addresses: arrayOf(str(45, /^[0-9a-fA-F.:]+$/), ENDPOINT_REPORT_ADDRESSES_MAX),
  /** The addresses that are outside the provider's networks (a subset of `addresses`). */
  outside: arrayOf(str(45, /^[0-9a-fA-F.:]+$/), ENDPOINT_REPORT_ADDRESSES_MAX),
});
export type EndpointReport = Infer<typeof endpointReport>;

/** The hub's egress echo endpoint on its agent listener (docs/protocol.md, "Egress probes"). */
export const EGRESS_ECHO_PATH = "/agent/v1/egress-echo";
const nonce = str(64, /^[A-Za-z0-9_-]{16,64}$/);
const ipAddress = str(45, /^[0-9a-fA-F.:]+$/);

/** Hub → agent: call the echo endpoint with this nonce through the client provider calls use. */
export const egressProbe = object({ nonce });
export type EgressProbe = Infer<typeof egressProbe>;

/** Agent → hub: the address the echo said it saw (`null`: the echo call failed), for the probe's nonce. */
export const egressProbeAnswer = object({ nonce, address: nullable(ipAddress) });
export type EgressProbeAnswer = Infer<typeof egressProbeAnswer>;

/** The echo endpoint's answer. */
export const egressEcho = object({ address: ipAddress });

export const CONTROL_SCHEMAS = {
  [ControlKind.CHALLENGE]: challenge,
  [ControlKind.AUTH]: auth,
  [ControlKind.WELCOME]: welcome,
  [ControlKind.INVENTORY]: inventory,
  [ControlKind.NOTICE]: notice,
  [ControlKind.PRICE_TABLE]: priceTable,
  [ControlKind.PRICE_ACK]: priceAck,
  [ControlKind.SETTLEMENT]: settlementStatement,
  [ControlKind.RECEIPT]: receiptBatch,
  [ControlKind.CLAIM]: receiptBatch,
  [ControlKind.RECEIPT_ACK]: receiptAck,
  [ControlKind.CHAIN_TAIL]: chainTail,
  [ControlKind.CONFIG]: agentConfig,
  [ControlKind.RATE_STATE]: rateState,
  [ControlKind.ENDPOINT_REPORT]: endpointReport,
  /** Hub → agent; the agent's answer on the same kind is `egressProbeAnswer`. */
  [ControlKind.EGRESS_PROBE]: egressProbe,
} as const;
