/**
 * Usage receipts: the record an agent keeps, signs and hash-chains for every stream it served
 * (docs/protocol.md, "Receipts"). Runtime-neutral (Web Crypto only): the agent writes receipts, the hub verifies
 * and countersigns them, and both verifiers (`ledger verify` on each side) read them with this module.
 *
 * The encoding is canonical: one byte sequence per receipt (fixed field order, big-endian fixed-width integers,
 * length-prefixed UTF-8 strings, no optional padding), so the hash and the signature never depend on how a
 * runtime happens to serialise an object.
 */
import { bytesEqual, concatBytes, fromBase64Url, fromUtf8, toBase64Url, toHex, utf8 } from "./bytes.ts";

/**
 * Receipt encoding version (the first byte of every receipt body): 1 for a stream the agent recorded serving,
 * 2 (the same fields, then `witness`) for one it signs on the hub's dispatch record (see `Receipt.witness`), 3 (the
 * same fields, then `witness` always, then the hub's sealed record: see `Receipt.hubRecord`).
 */
export const RECEIPT_VERSION = 1;
export const RECEIPT_VERSION_WITNESS = 2;
export const RECEIPT_VERSION_HUB_RECORD = 3;
/** Domain-separation prefix hashed before a receipt body: a receipt hash is never a hash of anything else. */
export const RECEIPT_HASH_CONTEXT = "wellspring/receipt/v1\n";
/** Prefix of what the agent signs: this prefix, then the receipt's 32-byte hash. */
export const RECEIPT_SIGN_CONTEXT = "wellspring/receipt-sig/v1\n";
/** Prefix of what the hub countersigns: this prefix, then the receipt's 32-byte hash. */
export const RECEIPT_COUNTERSIGN_CONTEXT = "wellspring/receipt-countersig/v1\n";
/** Hash a chain's first receipt names as its predecessor. */
export const RECEIPT_GENESIS_HASH: Uint8Array = new Uint8Array(32);
/**
 * Where `prevHash` sits in every receipt body version (after version u8 · seq i64), bytes: a body encoded with a
 * placeholder there can be linked to its predecessor by whoever signs the chain in order (the agent's ledger writer).
 */
export const RECEIPT_PREV_HASH_OFFSET = 9;
/** Longest string field (request id, agent id, model), UTF-8 bytes. */
export const RECEIPT_STRING_BYTES_MAX = 256;
/** Longest sealed hub record a receipt carries, bytes (see `Receipt.hubRecord`). */
export const RECEIPT_HUB_RECORD_BYTES_MAX = 1024;
/** Largest encoded receipt body, bytes (every string and the hub record at their maximum). */
export const RECEIPT_BODY_BYTES_MAX = 2048;
/** Ed25519 signature length, bytes. */
export const RECEIPT_SIGNATURE_BYTES = 64;
/** Largest integer field: 2⁶³ − 1 (money and counts are non-negative signed 64-bit in PostgreSQL). */
export const RECEIPT_INT_MAX = (1n << 63n) - 1n;

/** Why a stream ended, as the hub settled it; the byte is the index in this list (append only). */
export const RECEIPT_END_CAUSES = ["completed", "client_cancelled", "upstream_error", "upstream_timeout", "agent_lost", "refused", "gateway_error"] as const;
export type ReceiptEndCause = (typeof RECEIPT_END_CAUSES)[number];

/**
 * On whose record the agent signs a receipt; the byte is the index in this list (append only).
 * `served`: the agent recorded serving the stream (its own start and end times).
 * `dispatched`: the agent's record of the stream was lost in a crash (kill -9 before its record was durable), and
 * the hub's statement says it dispatched the request to this agent at a moment inside that crash's gap; the
 * times are the hub's dispatch time. Such a receipt proves the hub's word, countersigned, not the edge's.
 */
export const RECEIPT_WITNESSES = ["served", "dispatched"] as const;
export type ReceiptWitness = (typeof RECEIPT_WITNESSES)[number];

/**
 * How long a stream's start or end record waits in the agent's ledger to share one commit with others, ms. A
 * crash inside this window loses the record (the agent's crash gap covers it).
 */
export const LEDGER_SERVED_FLUSH_MS = 25;
/**
 * Beyond the flush window, what a crash gap also allows: a batch's commit on a busy disk (4–30 ms), the agent's
 * event-loop lag, the time from the hub's reservation to the agent starting the stream, and the hub noticing the
 * dead connection, ms.
 */
export const CRASH_GAP_MARGIN_MS = 1_000;
/**
 * The most a crash gap reaches on either side of the last moment the agent armed a flush of stream records (the
 * agent), and the most a crash-witnessed request's dispatch precedes the end of a session of that agent (the hub),
 * ms. A stream whose record a crash lost started at most this long before the crash.
 */
export const CRASH_GAP_MAX_MS = LEDGER_SERVED_FLUSH_MS + CRASH_GAP_MARGIN_MS;
/** Error allowed when the agent reads the hub's dispatch time on its own clock (offset measured at WELCOME), ms. */
export const CRASH_GAP_CLOCK_TOLERANCE_MS = 1_000;
/**
 * How much later than the stream's end the hub's `dispatchedAtMs` may be, ms. It is the reservation's `created_at`:
 * the dispatch for a request reserved on its own, but the settlement for one charged to a credit lease (its row is
 * written when it settles: the settlement batch, the database's answer, the spool's replay after a short outage).
 * So a crash gap reaches this much further forward, and the hub looks for the session's end this much earlier.
 */
export const CRASH_GAP_SETTLE_LAG_MS = 5_000;

/** Units a stream used, each a non-negative integer. */
export interface ReceiptUsage {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  audioSeconds: number;
  images: number;
  characters: number;
}

/** The fields of one receipt. Money in integer micro-USD (bigint); times in UTC epoch milliseconds. */
export interface Receipt {
  /** Position in the agent's chain: 1, 2, 3… with no gaps. */
  seq: number;
  /** SHA-256 receipt hash of the receipt at `seq − 1`; 32 zero bytes for seq 1. */
  prevHash: Uint8Array;
  agentId: string;
  requestId: string;
  model: string;
  /** What the provider reported in the response the agent relayed; null when it reported nothing. */
  reportedUsage: ReceiptUsage | null;
  /** What the hub charged for (the reported usage, or its estimate when the rule for the end cause says so). */
  chargedUsage: ReceiptUsage;
  /** The charge was estimated (no usage reported, or the stream ended early). */
  estimated: boolean;
  /** Price version the request was priced with; 0 when billing was off. */
  priceVer: number;
  /** Owner share the request settled at, basis points. */
  tierBps: number;
  /** What the user was charged, µUSD (as the hub settled it). */
  chargeMicros: bigint;
  /** What the owner earned, µUSD (as the hub settled it). */
  earningMicros: bigint;
  /**
   * What the agent computes the owner earned from its own copy of the price table at `priceVer` and
   * `chargedUsage` × `tierBps`, µUSD; -1 when it does not hold that version. A value ≠ `earningMicros` is a
   * disagreement the agent signed and both sides show.
   */
  agentEarningMicros: bigint;
  startedAtMs: number;
  endedAtMs: number;
  endCause: ReceiptEndCause;
  /** Absent = `served` (encoded as version 1); `dispatched` is encoded as version 2. */
  witness?: ReceiptWitness;
  /**
   * The hub's own record of the request (who the user and key were, the plan, the lease, the overdraft, its
   * settlement and request rows), sealed by the hub under its rebuild key: opaque to the agent, which signs and
   * keeps it so that the hub's books can be rebuilt from the edges (`npm run admin -- rebuild-from-edge`). Present
   * = encoded as version 3 (1…RECEIPT_HUB_RECORD_BYTES_MAX bytes).
   */
  hubRecord?: Uint8Array;
}

/** A receipt as it is kept and sent: its canonical bytes, their hash and the agent's signature. */
export interface SignedReceipt {
  receipt: Receipt;
  body: Uint8Array;
  hash: Uint8Array;
  signature: Uint8Array;
}

export class ReceiptFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ReceiptFormatError";
  }
}

const USAGE_FIELDS = ["inputTokens", "outputTokens", "cachedInputTokens", "audioSeconds", "images", "characters"] as const;

class Writer {
  readonly #parts: Uint8Array[] = [];
  u8(v: number): void {
    this.#parts.push(Uint8Array.of(v));
  }
  u32(v: number, name: string): void {
    if (!Number.isSafeInteger(v) || v < 0 || v > 0xffffffff) throw new ReceiptFormatError(`${name} must be an integer from 0 to 2^32-1`);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v);
    this.#parts.push(b);
  }
  i64(v: bigint | number, name: string, min = 0n): void {
    const n = typeof v === "bigint" ? v : Number.isSafeInteger(v) ? BigInt(v) : null;
    if (n === null || n < min || n > RECEIPT_INT_MAX) throw new ReceiptFormatError(`${name} must be an integer from ${min} to 2^63-1`);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigInt64(0, n);
    this.#parts.push(b);
  }
  str(v: string, name: string): void {
    const bytes = utf8(v);
    if (bytes.length === 0 || bytes.length > RECEIPT_STRING_BYTES_MAX)
      throw new ReceiptFormatError(`${name} must be 1 to ${RECEIPT_STRING_BYTES_MAX} UTF-8 bytes`);
    const len = new Uint8Array(2);
    new DataView(len.buffer).setUint16(0, bytes.length);
    this.#parts.push(len, bytes);
  }
  raw(v: Uint8Array, length: number, name: string): void {
    if (v.length !== length) throw new ReceiptFormatError(`${name} must be ${length} bytes`);
    this.#parts.push(v);
  }
  blob(v: Uint8Array, name: string): void {
    if (v.length === 0 || v.length > RECEIPT_HUB_RECORD_BYTES_MAX) throw new ReceiptFormatError(`${name} must be 1 to ${RECEIPT_HUB_RECORD_BYTES_MAX} bytes`);
    const len = new Uint8Array(2);
    new DataView(len.buffer).setUint16(0, v.length);
    this.#parts.push(len, v);
  }
  usage(u: ReceiptUsage, name: string): void {
    for (const f of USAGE_FIELDS) this.i64(u[f], `${name}.${f}`);
  }
  bytes(): Uint8Array {
    return concatBytes(this.#parts);
  }
}

class Reader {
  #o = 0;
  readonly #view: DataView;
  constructor(private readonly b: Uint8Array) {
    this.#view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  #need(n: number): void {
    if (this.#o + n > this.b.length) throw new ReceiptFormatError("receipt body is truncated");
  }
  u8(): number {
    this.#need(1);
    return this.b[this.#o++]!;
  }
  u32(): number {
    this.#need(4);
    const v = this.#view.getUint32(this.#o);
    this.#o += 4;
    return v;
  }
  i64(name: string): bigint {
    this.#need(8);
    const v = this.#view.getBigInt64(this.#o);
    this.#o += 8;
    if (v < 0n) throw new ReceiptFormatError(`${name} is negative`);
    return v;
  }
  i64Signed(): bigint {
    this.#need(8);
    const v = this.#view.getBigInt64(this.#o);
    this.#o += 8;
    return v;
  }
  num(name: string): number {
    const v = this.i64(name);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ReceiptFormatError(`${name} is too large`);
    return Number(v);
  }
  str(name: string): string {
    this.#need(2);
    const len = this.#view.getUint16(this.#o);
    this.#o += 2;
    if (len === 0 || len > RECEIPT_STRING_BYTES_MAX) throw new ReceiptFormatError(`${name} has an invalid length`);
    this.#need(len);
    const s = this.b.subarray(this.#o, this.#o + len);
    this.#o += len;
    try {
      return fromUtf8(s);
    } catch {
      throw new ReceiptFormatError(`${name} is not UTF-8`);
    }
  }
  raw(n: number): Uint8Array {
    this.#need(n);
    const s = this.b.slice(this.#o, this.#o + n);
    this.#o += n;
    return s;
  }
  blob(name: string): Uint8Array {
    this.#need(2);
    const len = this.#view.getUint16(this.#o);
    this.#o += 2;
    if (len === 0 || len > RECEIPT_HUB_RECORD_BYTES_MAX) throw new ReceiptFormatError(`${name} has an invalid length`);
    return this.raw(len);
  }
  usage(name: string): ReceiptUsage {
    const u = {} as Record<(typeof USAGE_FIELDS)[number], number>;
    for (const f of USAGE_FIELDS) u[f] = this.num(`${name}.${f}`);
    return u;
  }
  end(): void {
    if (this.#o !== this.b.length) throw new ReceiptFormatError("receipt body has trailing bytes");
  }
}

/**
 * The canonical body, in this order (integers big-endian; `i64` signed 64-bit, non-negative unless noted; `str`
 * = u16 length + 1…256 bytes of UTF-8):
 * version u8 · seq i64 · prevHash 32 bytes · agentId str · requestId str · model str ·
 * reported u8 (0 none, 1 present) [· reportedUsage 6 × i64] · chargedUsage 6 × i64 · estimated u8 (0/1) ·
 * priceVer u32 · tierBps u32 · chargeMicros i64 · earningMicros i64 · agentEarningMicros i64 (≥ −1) ·
 * startedAtMs i64 · endedAtMs i64 · endCause u8 [· witness u8, version 2: 1 = dispatched; version 3: 0 = served,
 * 1 = dispatched] [· hubRecord u16 length + 1…1024 bytes, version 3 only].
 * Usage = inputTokens, outputTokens, cachedInputTokens, audioSeconds, images, characters.
 */
export function encodeReceipt(r: Receipt): Uint8Array {
  const w = new Writer();
  const witness = RECEIPT_WITNESSES.indexOf(r.witness ?? "served");
  if (witness < 0) throw new ReceiptFormatError("witness is not a known witness");
  w.u8(r.hubRecord ? RECEIPT_VERSION_HUB_RECORD : witness === 0 ? RECEIPT_VERSION : RECEIPT_VERSION_WITNESS);
  if (!Number.isSafeInteger(r.seq) || r.seq < 1) throw new ReceiptFormatError("seq must be a positive integer");
  w.i64(r.seq, "seq");
  w.raw(r.prevHash, 32, "prevHash");
  w.str(r.agentId, "agentId");
  w.str(r.requestId, "requestId");
  w.str(r.model, "model");
  w.u8(r.reportedUsage ? 1 : 0);
  if (r.reportedUsage) w.usage(r.reportedUsage, "reportedUsage");
  w.usage(r.chargedUsage, "chargedUsage");
  w.u8(r.estimated ? 1 : 0);
  w.u32(r.priceVer, "priceVer");
  if (r.tierBps > 10_000) throw new ReceiptFormatError("tierBps must be at most 10000");
  w.u32(r.tierBps, "tierBps");
  w.i64(r.chargeMicros, "chargeMicros");
  w.i64(r.earningMicros, "earningMicros");
  w.i64(r.agentEarningMicros, "agentEarningMicros", -1n);
  w.i64(r.startedAtMs, "startedAtMs");
  w.i64(r.endedAtMs, "endedAtMs");
  if (r.endedAtMs < r.startedAtMs) throw new ReceiptFormatError("endedAtMs is before startedAtMs");
  const cause = RECEIPT_END_CAUSES.indexOf(r.endCause);
  if (cause < 0) throw new ReceiptFormatError("endCause is not a known end cause");
  w.u8(cause);
  if (r.hubRecord) {
    w.u8(witness);
    w.blob(r.hubRecord, "hubRecord");
  } else if (witness !== 0) w.u8(witness);
  return w.bytes();
}

/** Reads a canonical body; throws ReceiptFormatError for anything that is not exactly one. */
export function decodeReceipt(body: Uint8Array): Receipt {
  if (body.length > RECEIPT_BODY_BYTES_MAX) throw new ReceiptFormatError("receipt body is too large");
  const r = new Reader(body);
  const version = r.u8();
  if (version !== RECEIPT_VERSION && version !== RECEIPT_VERSION_WITNESS && version !== RECEIPT_VERSION_HUB_RECORD)
    throw new ReceiptFormatError("unknown receipt version");
  const seq = r.num("seq");
  if (seq < 1) throw new ReceiptFormatError("seq must be positive");
  const prevHash = r.raw(32);
  const agentId = r.str("agentId");
  const requestId = r.str("requestId");
  const model = r.str("model");
  const reported = r.u8();
  if (reported > 1) throw new ReceiptFormatError("reported flag must be 0 or 1");
  const reportedUsage = reported ? r.usage("reportedUsage") : null;
  const chargedUsage = r.usage("chargedUsage");
  const estimated = r.u8();
  if (estimated > 1) throw new ReceiptFormatError("estimated flag must be 0 or 1");
  const priceVer = r.u32();
  const tierBps = r.u32();
  if (tierBps > 10_000) throw new ReceiptFormatError("tierBps must be at most 10000");
  const chargeMicros = r.i64("chargeMicros");
  const earningMicros = r.i64("earningMicros");
  const agentEarningMicros = r.i64Signed();
  if (agentEarningMicros < -1n) throw new ReceiptFormatError("agentEarningMicros must be at least -1");
  const startedAtMs = r.num("startedAtMs");
  const endedAtMs = r.num("endedAtMs");
  if (endedAtMs < startedAtMs) throw new ReceiptFormatError("endedAtMs is before startedAtMs");
  const endCause = RECEIPT_END_CAUSES[r.u8()];
  if (!endCause) throw new ReceiptFormatError("endCause is not a known end cause");
  // Canonical: without a hub record `served` is only ever version 1, so a version 2 body must name another witness.
  const named = version === RECEIPT_VERSION ? undefined : RECEIPT_WITNESSES[r.u8()];
  if (version !== RECEIPT_VERSION && !named) throw new ReceiptFormatError("witness is not a known witness");
  if (version === RECEIPT_VERSION_WITNESS && named === "served") throw new ReceiptFormatError("witness is not a known witness");
  const witness = named === "served" ? undefined : named;
  const hubRecord = version === RECEIPT_VERSION_HUB_RECORD ? r.blob("hubRecord") : undefined;
  r.end();
  return {
    seq,
    prevHash,
    agentId,
    requestId,
    model,
    reportedUsage,
    chargedUsage,
    estimated: estimated === 1,
    priceVer,
    tierBps,
    chargeMicros,
    earningMicros,
    agentEarningMicros,
    startedAtMs,
    endedAtMs,
    endCause,
    ...(witness ? { witness } : {}),
    ...(hubRecord ? { hubRecord } : {}),
  };
}

function digest(bytes: Uint8Array): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
}

/** SHA-256 over the domain prefix and the canonical body. */
export async function receiptHash(body: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await digest(concatBytes([utf8(RECEIPT_HASH_CONTEXT), body])));
}

function signedMessage(context: string, hash: Uint8Array): Uint8Array<ArrayBuffer> {
  return concatBytes([utf8(context), hash]) as Uint8Array<ArrayBuffer>;
}

/** Encodes, hashes and signs a receipt with the agent's Ed25519 private key. */
export async function signReceipt(privateKey: CryptoKey, receipt: Receipt): Promise<SignedReceipt> {
  const body = encodeReceipt(receipt);
  const hash = await receiptHash(body);
  const signature = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, privateKey, signedMessage(RECEIPT_SIGN_CONTEXT, hash)));
  return { receipt, body, hash, signature };
}

/**
 * SHA-256 and Ed25519 done synchronously by the caller's runtime (the agent's is node:crypto with the key made once,
 * agent-deno/src/receipt_signer.ts, and the same calls in its ledger writer's Worker): the same bytes as
 * `signReceipt`, without WebCrypto's per-call cost.
 */
export interface ReceiptSigner {
  sha256(bytes: Uint8Array): Uint8Array;
  /** Ed25519 over `message` with the agent's private key (64 bytes). */
  sign(message: Uint8Array): Uint8Array;
}

/** `signReceipt` through a `ReceiptSigner`: the same body, hash and signature bytes. */
export function signReceiptWith(signer: ReceiptSigner, receipt: Receipt): SignedReceipt {
  const body = encodeReceipt(receipt);
  const hash = signer.sha256(concatBytes([utf8(RECEIPT_HASH_CONTEXT), body]));
  const signature = signer.sign(signedMessage(RECEIPT_SIGN_CONTEXT, hash));
  return { receipt, body, hash, signature };
}

/** Imports a raw 32-byte Ed25519 public key (base64url) for verifying; null when it is not one. */
export async function importReceiptVerifyKey(publicKeyB64: string): Promise<CryptoKey | null> {
  try {
    const raw = fromBase64Url(publicKeyB64);
    if (raw.length !== 32) return null;
    return await crypto.subtle.importKey("raw", raw as Uint8Array<ArrayBuffer>, { name: "Ed25519" }, false, ["verify"]);
  } catch {
    return null;
  }
}

async function verifyOver(context: string, key: CryptoKey, hash: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (signature.length !== RECEIPT_SIGNATURE_BYTES) return false;
  try {
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature as Uint8Array<ArrayBuffer>, signedMessage(context, hash));
  } catch {
    return false;
  }
}

/** The agent's signature over a receipt hash; false for anything malformed, never throws. */
export function verifyReceiptSignature(key: CryptoKey, hash: Uint8Array, signature: Uint8Array): Promise<boolean> {
  return verifyOver(RECEIPT_SIGN_CONTEXT, key, hash, signature);
}

/** The hub's countersignature: Ed25519 over the countersign prefix and the receipt hash. */
export async function countersignReceipt(hubPrivateKey: CryptoKey, hash: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, hubPrivateKey, signedMessage(RECEIPT_COUNTERSIGN_CONTEXT, hash)));
}

export function verifyCountersignature(hubKey: CryptoKey, hash: Uint8Array, signature: Uint8Array): Promise<boolean> {
  return verifyOver(RECEIPT_COUNTERSIGN_CONTEXT, hubKey, hash, signature);
}

/** One entry of a kept chain: the stored body, the hash stored beside it, the signature. */
export interface ChainEntry {
  body: Uint8Array;
  hash: Uint8Array;
  signature: Uint8Array;
}

/** What is wrong with the first bad entry of a chain. */
export type ChainFault =
  /** the body is not a canonical receipt */
  | "malformed"
  /** the stored hash is not the hash of the body */
  | "bad_hash"
  /** the signature does not verify with the agent's key */
  | "bad_signature"
  /** the receipt names another agent */
  | "wrong_agent"
  /** a sequence number is skipped */
  | "gap"
  /** a sequence number at or below one already seen */
  | "reorder"
  /** the previous-hash link does not name the receipt before it (a fork) */
  | "fork"
  /** a request id seen earlier in the chain */
  | "duplicate_request"
  /** the chain ends before the tail the other side holds */
  | "truncated"
  /** the chain's tail differs from the tail the other side holds */
  | "tail_mismatch";

export interface ChainTail {
  seq: number;
  /** Receipt hash at `seq` (32 zero bytes with seq 0: an empty chain). */
  hash: Uint8Array;
}

export type ChainVerdict =
  | { ok: true; count: number; tail: ChainTail; receipts: Receipt[] }
  | { ok: false; count: number; firstBadSeq: number; index: number; fault: ChainFault; detail: string };

export interface VerifyChainOptions {
  /** The agent's id, which every receipt must name. */
  agentId: string;
  /** The agent's Ed25519 public key. */
  key: CryptoKey;
  /** The tail the other side holds (a countersigned tail): the chain must reach it and agree with it. */
  expectedTail?: ChainTail;
}

/**
 * Verifies a chain from its first receipt: canonical bodies, hashes, signatures, sequence 1, 2, 3… and every
 * link, then the expected tail. Names the first bad entry (the sequence number it should have had) and why.
 */
export async function verifyChain(entries: readonly ChainEntry[], opts: VerifyChainOptions): Promise<ChainVerdict> {
  let prev: ChainTail = { seq: 0, hash: RECEIPT_GENESIS_HASH };
  const receipts: Receipt[] = [];
  const requests = new Set<string>();
  const bad = (index: number, fault: ChainFault, detail: string): ChainVerdict => ({
    ok: false,
    count: index,
    firstBadSeq: prev.seq + 1,
    index,
    fault,
    detail,
  });
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    let r: Receipt;
    try {
      r = decodeReceipt(e.body);
    } catch (error) {
      return bad(i, "malformed", (error as Error).message);
    }
    const hash = await receiptHash(e.body);
    if (!bytesEqual(hash, e.hash)) return bad(i, "bad_hash", `stored hash ${toHex(e.hash).slice(0, 16)}… is not the body's`);
    if (!(await verifyReceiptSignature(opts.key, hash, e.signature))) return bad(i, "bad_signature", "the agent's signature does not verify");
    if (r.agentId !== opts.agentId) return bad(i, "wrong_agent", `names agent ${r.agentId}`);
    if (r.seq <= prev.seq) return bad(i, "reorder", `sequence ${r.seq} after ${prev.seq}`);
    if (r.seq > prev.seq + 1) return bad(i, "gap", `sequence ${r.seq} after ${prev.seq}`);
    if (!bytesEqual(r.prevHash, prev.hash)) return bad(i, "fork", `previous hash does not name receipt ${prev.seq}`);
    if (requests.has(r.requestId)) return bad(i, "duplicate_request", `request ${r.requestId} already has a receipt`);
    requests.add(r.requestId);
    receipts.push(r);
    prev = { seq: r.seq, hash };
  }
  const t = opts.expectedTail;
  if (t) {
    if (prev.seq < t.seq) return bad(entries.length, "truncated", `chain ends at ${prev.seq}, the other side holds ${t.seq}`);
    const at = t.seq === 0 ? RECEIPT_GENESIS_HASH : await receiptHash(entries[t.seq - 1]!.body);
    if (!bytesEqual(at, t.hash))
      return {
        ok: false,
        count: entries.length,
        firstBadSeq: t.seq,
        index: t.seq - 1,
        fault: "tail_mismatch",
        detail: `receipt ${t.seq} differs from the other side's`,
      };
  }
  return { ok: true, count: entries.length, tail: prev, receipts };
}

/**
 * The export / log file: records back to back, each `u32 bodyLength · body · 64-byte signature` (the hash is
 * recomputed by the reader). `ledger export` writes it; `ledger verify` reads it.
 */
export function encodeLogRecord(body: Uint8Array, signature: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length + RECEIPT_SIGNATURE_BYTES);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  out.set(signature, 4 + body.length);
  return out;
}

export interface LogRecords {
  records: { body: Uint8Array; signature: Uint8Array }[];
  /** Bytes of whole records; anything after is a torn tail (a write cut by a crash before its fsync). */
  wholeBytes: number;
}

/** Splits a log file into whole records; a record longer than RECEIPT_BODY_BYTES_MAX ends the whole part. */
export function decodeLogRecords(file: Uint8Array): LogRecords {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const records: LogRecords["records"] = [];
  let o = 0;
  while (o + 4 <= file.length) {
    const len = view.getUint32(o);
    if (len > RECEIPT_BODY_BYTES_MAX || o + 4 + len + RECEIPT_SIGNATURE_BYTES > file.length) break;
    records.push({ body: file.slice(o + 4, o + 4 + len), signature: file.slice(o + 4 + len, o + 4 + len + RECEIPT_SIGNATURE_BYTES) });
    o += 4 + len + RECEIPT_SIGNATURE_BYTES;
  }
  return { records, wholeBytes: o };
}

/** A chain's records with their hashes, ready for `verifyChain`. */
export async function logEntries(records: LogRecords["records"]): Promise<ChainEntry[]> {
  const out: ChainEntry[] = [];
  for (const r of records) out.push({ ...r, hash: await receiptHash(r.body) });
  return out;
}

/** A receipt in JSON-safe form (money as decimal strings, bytes as base64url), for exports people read. */
export function receiptToJson(r: Receipt): Record<string, unknown> {
  return {
    ...r,
    ...(r.hubRecord ? { hubRecord: toBase64Url(r.hubRecord) } : {}),
    prevHash: toBase64Url(r.prevHash),
    chargeMicros: r.chargeMicros.toString(),
    earningMicros: r.earningMicros.toString(),
    agentEarningMicros: r.agentEarningMicros.toString(),
    startedAt: new Date(r.startedAtMs).toISOString(),
    endedAt: new Date(r.endedAtMs).toISOString(),
  };
}
