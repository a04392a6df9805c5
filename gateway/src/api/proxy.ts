/**
 * The request path, HTTP ↔ tunnel: authenticate the virtual key, read the routing fields as the body streams in
 * (every byte, so the hub reads what the provider will read), pick an agent, open the billing meter, and forward
 * bytes both ways as they arrive — no buffering beyond the bytes before the routing fields, no re-serialisation.
 * A client that goes away resets the stream, which aborts the provider call at the agent. Money is the meter's
 * (`billing/meter.ts`): `meter.open` before anything goes upstream, `hold.settle` when the request ends.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  forwardedQuery,
  JsonBodyScanner,
  MESSAGE_BATCH_BODY_BYTES_MAX,
  MultipartBodyScanner,
  multipartBoundary,
  ResetCode,
  RESPONSE_HEADERS_DROPPED,
  type ApiFamily,
  type BodyFields,
  type BodyScanner,
  type RequestHead,
  type SettlementStatement,
} from "@wellspring/protocol";
import { newId } from "@wellspring/db/core";
import { GatewayError, sendError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { AgentLink, HubStream } from "../tunnel/hub_stream.ts";
import { effectiveTier, type AgentRegistry, type Tier } from "../tunnel/registry.ts";
import {
  agentFaultStatus,
  NO_RESTRICTION,
  rateLimitedRetryMs,
  ResponseIdTap,
  retryableReset,
  type Candidate,
  type NoCandidate,
  type Routing,
} from "../routing/mod.ts";
import { BodyReader } from "./body_reader.ts";
import { extractKey, type KeyVerifier, type Principal } from "./keys.ts";
import { recordRowJson, type RecordWriter, type RequestRecordInput } from "./records.ts";
import type { SettleOutcome } from "../billing/settlement_batcher.ts";
import type { HubRecordSealer } from "../ledger/hub_record.ts";
import type { EndCause, Usage } from "../billing/usage.ts";
import { isUnavailable, LedgerUnavailableError } from "../billing/health.ts";
import { InsufficientBalanceError, UnpricedModelError, type Charge, type Hold, type Meter } from "../billing/meter.ts";
import { settlementStatement } from "../billing/statement.ts";
import type { DeferredSettlements } from "./deferred.ts";
import { freeRouteLimited, type FreeRouteLimiter } from "./free_routes.ts";
import { observeLimiter, observeRequestEnd } from "../observability/metrics.ts";
import {
  BATCH_CREATE_ROUTE,
  FILE_UPLOAD_ROUTE,
  FORWARDED_REQUEST_HEADERS,
  MESSAGE_BATCH_CREATE_ROUTE,
  type ProxyRoute,
  type StoredObjectCall,
} from "./routes.ts";
import { MESSAGE_BATCH_OBJECT_BYTES_MAX, parseBatchObject, type HubBatchObject, type MessageBatchRoutes } from "../routing/message_batches.ts";
import { MessageBatchWorstCase } from "../billing/message_batch_body.ts";
import { modelLimits } from "../billing/worst_case.ts";
import { BATCH_PRICE_BPS } from "../billing/prices.ts";
import { BATCH_CREATE_BODY_BYTES_MAX, BATCH_OBJECT_BYTES_MAX, batchSnapshot, parseBatchCreate } from "./openai_batches.ts";
import type { DeferredKind } from "../billing/deferred.ts";
import { FileObjectTap, ObjectTap } from "../routing/files.ts";
import { BatchInputScanner } from "../billing/batch_input.ts";
import { LimitRefusedError, type Admission, type Limiter } from "../limits/limiter.ts";
import { estimatedTokens, refusalError } from "../limits/refusal.ts";
import type { ContentRules, ContentScreen } from "../ops/mod.ts";

/** With billing on, bytes read (at most) before dispatch, so a small body's cap, `n` and size are known for its hold. */
export const BILLING_SCAN_BYTES_MAX = 256 * 1024;

export interface ProxyLimits {
  /** Largest request body accepted, bytes. */
  requestBodyBytesMax: number;
  /** Longest wait for the response head after the request was dispatched, ms. */
  responseHeadTimeoutMs: number;
  /** Longest silence inside a response body before the stream is cut, ms. */
  streamIdleTimeoutMs: number;
  /** Longest silence inside a request body before it is wholly sent upstream (a stalled upload is answered 408), ms. */
  requestBodyIdleTimeoutMs: number;
  /** Retry-After sent with 503 when no agent has room, seconds. */
  noCapacityRetryAfterSeconds: number;
  /** Largest file upload (`POST /v1/files`) accepted, bytes: streamed to the agent, never held whole. */
  fileUploadBytesMax: number;
  /** Largest Message Batch create body (`POST /v1/messages/batches`) accepted, bytes: streamed, never held whole. */
  messageBatchBodyBytesMax: number;
}

/** The hub's file upload limit: OpenAI's own per-file limit, 512 MB (512,000,000 bytes). */
export const FILE_UPLOAD_BYTES_MAX = 512_000_000;

export const DEFAULT_PROXY_LIMITS: ProxyLimits = {
  requestBodyBytesMax: 32 * 1024 * 1024,
  responseHeadTimeoutMs: 600_000,
  streamIdleTimeoutMs: 300_000,
  requestBodyIdleTimeoutMs: 30_000,
  noCapacityRetryAfterSeconds: 2,
  fileUploadBytesMax: FILE_UPLOAD_BYTES_MAX,
  messageBatchBodyBytesMax: MESSAGE_BATCH_BODY_BYTES_MAX,
};

/** After an early answer, the most of the rest of an upload read and dropped before the connection is closed, bytes and ms. */
export const UPLOAD_DRAIN_BYTES_MAX = 64 * 1024 * 1024;
export const UPLOAD_DRAIN_MS_MAX = 10_000;

/** Retry-After sent when the ledger cannot be reached to grant credit, seconds. */
export const LEDGER_UNAVAILABLE_RETRY_AFTER_SECONDS = 5;

export interface ProxyDeps {
  registry: AgentRegistry;
  /** Which agent serves a request, breakers, scores and the failover bounds. */
  routing: Routing;
  keys: KeyVerifier;
  records: RecordWriter;
  gatewayId: string;
  limits: ProxyLimits;
  log: Logger;
  /** Holds before dispatch and settles at the end (with billing off: reads usage only). */
  meter: Meter;
  /** Rate limit of routes that are free at the provider (they cost owners capacity, not money). */
  freeRoutes: FreeRouteLimiter;
  /** Keys', users' and agents' limits (RPM, TPM, concurrency, monthly budget), before dispatch. */
  limiter: Limiter;
  /** Models known to the hub even when no agent serving them is connected (404 vs 503). */
  knownModels(api: ApiFamily): Promise<ReadonlySet<string>>;
  /** Prohibited-term rules read on JSON bodies before each chunk is forwarded; null = no content screening. */
  content: ContentRules | null;
  /** Seals the hub's record of each settled request into its statement; absent = statements carry none. */
  sealer?: HubRecordSealer | null;
  /** Background responses' and batches' settlements, after their create call (absent: billing off, or not wired). */
  deferred?: DeferredSettlements | null;
  /** Where each Message Batch lives (absent: Message Batches are not offered). */
  messageBatches?: MessageBatchRoutes | null;
}

export async function authenticate(req: IncomingMessage, keys: KeyVerifier): Promise<Principal> {
  const secret = extractKey(req.headers);
  if (!secret) {
    throw new GatewayError("missing_api_key", "You didn't provide an API key. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.");
  }
  const check = await keys.verify(secret);
  if (check.ok) return check.principal;
  if (check.reason === "expired") throw new GatewayError("key_expired", "This API key has expired.");
  if (check.reason === "suspended") throw new GatewayError("account_suspended", "The account that owns this API key is suspended.");
  if (check.reason === "key_suspended") throw new GatewayError("key_suspended", "This API key is suspended by an administrator of this hub.");
  // Never echo the key back: not even a part of it.
  throw new GatewayError("invalid_api_key", "Incorrect API key provided.");
}

/** Why a body the scanner read is refused before it reaches a provider, or null. */
function bodyRefusal(fields: BodyFields): GatewayError | null {
  if (fields.billedTools.length > 0) {
    return new GatewayError(
      "invalid_request",
      `The server-side tool \`${fields.billedTools[0]}\` is billed per call by the provider and is not offered through this gateway; use function tools instead.`,
      { param: "tools" },
    );
  }
  return null;
}

/** A limit's refusal in the route's error shape. */
function limitError(error: unknown, api: ApiFamily): unknown {
  return error instanceof LimitRefusedError ? refusalError(error.refusal, api) : error;
}

/** The meter's refusals in the route's error shape. */
function meterError(error: unknown, api: ApiFamily): unknown {
  if (error instanceof InsufficientBalanceError) {
    return new GatewayError(
      "insufficient_quota",
      api === "anthropic"
        ? "Your credit balance is too low to access the API. Top up your Wellspring balance."
        : "You exceeded your current quota: your balance does not cover this request. Top up your Wellspring balance.",
    );
  }
  if (error instanceof UnpricedModelError) return new GatewayError("model_not_found", error.message, { param: "model" });
  if (error instanceof LedgerUnavailableError) return ledgerUnavailable(error);
  return error;
}

function ledgerUnavailable(cause: unknown): GatewayError {
  return new GatewayError("service_unavailable", "Billing is briefly unavailable, so no new credit can be granted; retry shortly.", {
    retryAfterSeconds: LEDGER_UNAVAILABLE_RETRY_AFTER_SECONDS,
    cause,
  });
}

/** One try of the request on one agent. */
interface Attempt {
  candidate: Candidate;
  dispatchedAt: number;
  /** Its response head was not the agent's fault. */
  healthy: boolean;
  /** Its outcome was reported to routing (served or failed). */
  judged: boolean;
}

/** Who serves an attempt, as the meter settles it: the agent, its owner and the tier it settles at now. */
function servedBy(c: Candidate): { agentId: string; ownerId: string; tier: Tier } {
  return { agentId: c.agentId, ownerId: c.profile.ownerId, tier: effectiveTier(c.profile) };
}

/** How a request is routed: pinned to one agent or not, the context it needs, which agents its key accepts. */
interface RouteChoice {
  pinnedAgentId: string | null;
  contextTokensNeeded: () => number | null;
  restriction: Principal["agentRestriction"];
}

/** Bytes per token assumed when sizing a request against a context window (errs long: JSON keys count too). */
export const CONTEXT_BYTES_PER_TOKEN = 4;

/**
 * Context window tokens a whole body may need: its bytes at CONTEXT_BYTES_PER_TOKEN, plus the output cap it
 * asks for. Null for multipart bodies (audio and images are not sized by their bytes).
 */
function contextTokensNeeded(route: ProxyRoute, fields: BodyFields, held: readonly Buffer[]): number | null {
  // A batch's requests are sized one by one (each within its model's window), not as one body.
  if (route.body !== "json" || route.billing !== "tokens" || route === MESSAGE_BATCH_CREATE_ROUTE) return null;
  let bytes = 0;
  for (const c of held) bytes += c.length;
  return Math.ceil(bytes / CONTEXT_BYTES_PER_TOKEN) + (fields.maxOutputTokens ?? 0);
}

class ProxyExchange {
  readonly requestId = newId("req");
  readonly startedAt = Date.now();
  firstByteAt: number | null = null;
  bytesIn = 0;
  bytesOut = 0;
  stream: HubStream | null = null;
  conn: AgentLink | null = null;
  model: string | null = null;
  streamed = false;
  status = 0;
  endCause: EndCause | null = null;
  #pendingConsume = 0;
  /** The request's billing meter, from dispatch to its end. */
  #hold: Hold | null = null;
  /** What the request took from the limits, from its start to its end. */
  #admission: Admission | null = null;
  /** The whole request body went into the tunnel. */
  #dispatched = false;
  /** Reads the routing and billing fields from every byte of the body. */
  #scanner: BodyScanner | null = null;
  /** Reads the body's text for prohibited terms (JSON bodies, while rules exist). */
  #screen: ContentScreen | null = null;
  #declaredBytes: number | null = null;
  #headTimer: ReturnType<typeof setTimeout> | null = null;
  #idleTimer: ReturnType<typeof setTimeout> | null = null;
  /** Response body bytes were written (the head went with them). */
  #bodyWritten = false;
  /**
   * The body length the agent's response head declared (content-length), or null. Node does not hold a response to
   * it: bytes past it would read as another response on the client's keep-alive connection (a forged answer from
   * a modified agent), and a body short of it leaves the client waiting. So the gateway holds the agent to it.
   */
  #declaredLength: number | null = null;
  principal: Principal | null = null;
  /** The request body as dispatch sends it: the bytes held, whether they are all of it, and the rest's reader. */
  #body: { held: Buffer[]; replayable: boolean; rest: BodyReader | null } | null = null;
  /** The candidates routing ordered for this request, and the agents tried so far. */
  #candidates: Candidate[] = [];
  readonly #tried = new Set<string>();
  /** The attempt whose stream is open now (one at a time), and when the first was dispatched. */
  #attempt: Attempt | null = null;
  #firstDispatchAt = 0;
  /** The `previous_response_id` (or stored response) the request is pinned by, if any, and its agent. */
  #pinnedResponseId: string | null = null;
  #pinnedAgentId: string | null = null;
  /** Reads a created response's id from the head of a successful `/v1/responses` answer (sticky routing). */
  #responseIdTap: ResponseIdTap | null = null;
  /** The id of the response this `/v1/responses` call created, once read. */
  #createdResponseId: string | null = null;
  /** The file (`file_id`) the request is pinned by, if any (a call on a file, or a request naming files). */
  #pinnedFileId: string | null = null;
  /** Reads an uploaded file's object from a successful `POST /v1/files` answer (files routing). */
  #fileTap: FileObjectTap | null = null;
  /** A Message Batch's creation: sums its requests' worst case as its body is read (the hold). */
  #batchWorst: MessageBatchWorstCase | null = null;
  /**
   * A successful answer that is a batch object (create, retrieve, cancel): held whole (it is small) so that its
   * `results_url` is handed out as the hub's path; the head waits for it. Null for every other answer.
   */
  #batchAnswer: { status: number; headers: [string, string][]; chunks: Uint8Array[]; bytes: number } | null = null;
  /** The batch this create call made, once its answer was read and its route written. */
  #createdBatch: { id: string; object: HubBatchObject } | null = null;
  /** Reads an upload's lines as a batch input file (its summary is recorded when its purpose is `batch`). */
  #batchInput: BatchInputScanner | null = null;
  /** A batch create: the batch's worst usage and price share (held instead of the body's), and its answer's tap. */
  #batch: { worst: Usage; priceBps: bigint; tap: ObjectTap } | null = null;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly route: ProxyRoute,
    readonly deps: ProxyDeps,
    /** Set for a call on a stored object (no body; routed by the object's id). */
    readonly stored: StoredObjectCall | null = null,
  ) {
    res.setHeader("x-wellspring-request-id", this.requestId);
    res.on("close", () => this.#onClientClose());
  }

  get finished(): boolean {
    return this.endCause !== null;
  }

  #finish(cause: EndCause, status: number): void {
    if (this.endCause) return;
    this.endCause = cause;
    if (!this.status) this.status = status;
    if (this.#headTimer) clearTimeout(this.#headTimer);
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    const attempt = this.#attempt;
    if (attempt && !attempt.judged) this.deps.routing.released(attempt.candidate.agentId, this.model!);
    const durationMs = Date.now() - this.startedAt;
    const firstByteMs = this.firstByteAt === null ? null : this.firstByteAt - this.startedAt;
    observeRequestEnd({
      route: this.route.path,
      model: this.conn ? this.model : null,
      status: this.status,
      endCause: cause,
      streamed: this.streamed,
      durationMs,
      firstByteMs,
    });
    // The access log: ids, sizes and timings (the agent logs `stream.end` with the same requestId).
    this.deps.log.info("request.end", {
      requestId: this.requestId,
      keyId: this.principal?.keyId,
      agentId: this.conn?.agentId,
      route: this.route.path,
      model: this.model,
      status: this.status,
      endCause: cause,
      streamed: this.streamed,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      durationMs,
      firstByteMs,
    });
    if (!this.principal) return;
    if (this.stored && !this.stored.deletes) void this.deps.deferred?.nudge(this.stored.objectId, deferredKindOf(this.stored));
    const deferTo = this.#deferrableResponse();
    if (deferTo !== null) {
      void this.#defer(deferTo, cause, durationMs, firstByteMs);
      return;
    }
    const batch = this.#createdBatch;
    if (batch && this.#hold?.heldMicros != null && this.deps.deferred && this.conn?.agentId) {
      void this.#defer({ id: batch.id, kind: "anthropic_batch", snapshot: batch.object }, cause, durationMs, firstByteMs);
      return;
    }
    this.#settle(cause, durationMs, firstByteMs);
  }

  /**
   * The background response whose create call this was, when its charge must wait for its end (docs/billing.md,
   * "Background responses"): the provider accepted it and no final usage came with the answer. Else null.
   */
  #deferrableResponse(): { id: string; kind: DeferredKind; snapshot: Record<string, unknown> | null } | null {
    const hold = this.#hold;
    if (!this.deps.deferred || !hold || hold.heldMicros === null || this.stored || this.status >= 300 || !this.conn?.agentId) return null;
    if (this.route === BATCH_CREATE_ROUTE) {
      // A batch: the provider's batch object names it (its usage comes when it ends).
      const batch = this.#batch?.tap.object();
      if (!batch || typeof batch.id !== "string" || !/^batch_[A-Za-z0-9_-]{1,200}$/.test(batch.id)) {
        this.deps.log.warn("batches.create_unread", { requestId: this.requestId, agentId: this.conn.agentId });
        return null;
      }
      return { id: batch.id, kind: "openai_batch", snapshot: batchSnapshot(batch) };
    }
    if (this.route.path !== "/v1/responses" || this.#scanner?.fields.background !== true || this.#createdResponseId === null) return null;
    return hold.reported === null ? { id: this.#createdResponseId, kind: "response", snapshot: null } : null;
  }

  /**
   * Hands the hold to the deferred settlements (a background response's or a batch's); if that cannot be written,
   * the request settles now by the usual rules (a batch's create call: at nothing).
   */
  async #defer(
    object: { id: string; kind: DeferredKind; snapshot: Record<string, unknown> | null },
    cause: EndCause,
    durationMs: number,
    firstByteMs: number | null,
  ): Promise<void> {
    const record = this.#record(cause, durationMs, firstByteMs, null);
    const agentId = this.conn!.agentId!;
    const handed = await this.#hold!.handOver(agentId, (held) =>
      this.deps.deferred!.defer(held, object.id, record, object.kind, object.snapshot, this.#admission?.budgetTaken() ?? null),
    );
    if (!handed) {
      if (object.kind !== "response") this.deps.log.error("batch.unsettled", { requestId: this.requestId, agentId, kind: object.kind, batchId: object.id });
      return this.#settle(cause, durationMs, firstByteMs);
    }
    // Concurrency ends with the call; the key's budget keeps the hold until the settlement corrects it (docs/billing.md).
    this.#admission?.end({ tokens: null, chargedMicros: null });
    this.deps.records.add(record);
  }

  #settle(cause: EndCause, durationMs: number, firstByteMs: number | null): void {
    // A settled request's record goes in its settlement's statement (one write per request); any other is
    // written by the record writer.
    let recordJson: string | null = null;
    const charge: Charge | null =
      this.#hold?.settle({ cause, status: this.status, responded: this.firstByteAt !== null, dispatched: this.#dispatched }, (c) => {
        recordJson = recordRowJson(this.#record(cause, durationMs, firstByteMs, c));
        return recordJson;
      }) ?? null;
    const usage = charge?.usage ?? null;
    // TPM is corrected to the usage (nothing used when nothing went upstream), the budget to the charge.
    const tokens = usage ? usage.inputTokens + usage.outputTokens : this.#dispatched || this.firstByteAt !== null ? null : 0;
    this.#admission?.end({ tokens, chargedMicros: charge?.chargeMicros ?? (this.#dispatched ? null : 0n) });
    if (recordJson === null) this.deps.records.add(this.#record(cause, durationMs, firstByteMs, charge));
    if (charge && this.conn && this.model)
      sendStatement(this.conn, settlementStatement(this.requestId, this.model, cause, charge), charge.written, this.deps.sealer ?? null, recordJson);
  }

  /** The request's record (ids, sizes, times, usage and money; never content). */
  #record(cause: EndCause, durationMs: number, firstByteMs: number | null, charge: Charge | null): RequestRecordInput {
    const usage = charge?.usage ?? null;
    return {
      id: this.requestId,
      userId: this.principal!.userId,
      keyId: this.principal!.keyId,
      agentId: this.conn?.agentId ?? null,
      gatewayId: this.deps.gatewayId,
      route: this.route.path,
      provider: this.route.api,
      model: this.model,
      streamed: this.streamed,
      httpStatus: this.status,
      endCause: cause,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      startedAt: new Date(this.startedAt),
      firstByteMs,
      durationMs,
      inputTokens: usage?.inputTokens ?? null,
      outputTokens: usage?.outputTokens ?? null,
      cachedInputTokens: usage?.cachedInputTokens ?? null,
      usageEstimated: charge?.estimated ?? false,
      priceVer: charge?.priceVer ?? null,
      tier: charge?.tier ?? null,
      tierBps: charge?.tierBps ?? null,
      userChargeMicros: charge?.chargeMicros ?? null,
      ownerEarningMicros: charge?.earningMicros ?? null,
    };
  }

  fail(error: GatewayError, cause: EndCause): void {
    if (this.finished) return;
    this.stream?.reset(ResetCode.CANCEL, error.code);
    this.#finish(cause, error.status);
    sendError(this.res, this.route.api, error, this.requestId);
    if (!this.req.complete) this.#dropRestOfUpload();
  }

  /**
   * Answered before the upload finished: the client may still be sending, and cannot read the answer if the
   * connection closes under it. Read and drop the rest — up to UPLOAD_DRAIN_BYTES_MAX or UPLOAD_DRAIN_MS_MAX —
   * then the connection serves its next request; past either bound it is closed.
   */
  #dropRestOfUpload(): void {
    const req = this.req;
    const socket = req.socket;
    let dropped = 0;
    // Only while this upload is still arriving: once it is complete the connection may serve another request.
    const cut = () => {
      if (!req.complete) socket.destroy();
    };
    const timer = setTimeout(cut, UPLOAD_DRAIN_MS_MAX);
    timer.unref();
    req.on("data", (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > UPLOAD_DRAIN_BYTES_MAX) cut();
    });
    req.once("end", () => clearTimeout(timer));
    req.once("close", () => clearTimeout(timer));
    // The body reader waits on 'readable' events, under which resume() does nothing.
    req.removeAllListeners("readable");
    req.resume();
  }

  #onClientClose(): void {
    if (this.res.writableFinished || this.finished) return;
    this.stream?.reset(ResetCode.CANCEL, "client closed the connection");
    this.#finish("client_cancelled", 499);
  }

  /** Feeds one chunk of the body to the scanner; a body that cannot be accepted stops the request here. */
  #scan(chunk: Uint8Array): void {
    const scanner = this.#scanner!;
    scanner.push(chunk);
    if (scanner.problem) throw this.#bodyProblem(scanner.problem);
    const refusal = bodyRefusal(scanner.fields);
    if (refusal) throw refusal;
    const rule = this.#screen?.push(chunk);
    if (rule) throw this.#contentRefused(rule, this.#screen!);
  }

  /** A prohibited term matched: keeps the body's hash and the rule (never the text) and refuses in the route's shape. */
  #contentRefused(ruleId: string, screen: ContentScreen): GatewayError {
    const { deps, principal } = this;
    const record = { requestId: this.requestId, userId: principal!.userId, keyId: principal!.keyId, ruleId, requestHash: screen.digest(), api: this.route.api };
    deps.content?.refused(record).catch((error: unknown) => deps.log.error("content.refusal_unrecorded", { requestId: this.requestId, ruleId, error }));
    deps.log.info("content.refused", { requestId: this.requestId, ruleId });
    return new GatewayError("content_policy_violation", "This request was refused: its content is not allowed by the platform's usage policy.");
  }

  #bodyProblem(problem: string): GatewayError {
    if (problem === "the request body is empty" && this.route === FILE_UPLOAD_ROUTE) {
      return new GatewayError("invalid_request", "The upload is empty: send a multipart body with a `file` and a `purpose` field.");
    }
    if (problem === "the request body is empty") return new GatewayError("model_required", "Request body is empty; it must name a model.", { param: "model" });
    return new GatewayError("invalid_request", `We could not read the body of your request: ${problem}.`);
  }

  /** Tokens the request counts against TPM limits (input estimate + requested output), once its fields are read. */
  #estimatedTokens: number | null = null;

  /** The body's size as far as it is known: declared, or received so far. */
  get #inputBytes(): number {
    return this.#declaredBytes ?? this.bytesIn;
  }

  async run(): Promise<void> {
    const { req, route, deps } = this;
    const declared = req.headers["content-length"];
    const declaredBytes = declared === undefined ? null : Number(declared);
    if (declaredBytes !== null && (!Number.isSafeInteger(declaredBytes) || declaredBytes < 0)) {
      throw new GatewayError("invalid_request", "Content-Length is not a valid length.");
    }
    this.#declaredBytes = declaredBytes;
    this.principal = await authenticate(req, deps.keys);
    const bodyMax = this.#bodyBytesMax;
    if (declaredBytes !== null && declaredBytes > bodyMax) {
      throw new GatewayError(
        "body_too_large",
        route === FILE_UPLOAD_ROUTE
          ? `The file upload is ${declaredBytes} bytes; the limit is ${bodyMax} bytes.`
          : `Request body is ${declaredBytes} bytes; the limit is ${bodyMax} bytes.`,
      );
    }
    // Concurrency and RPM are held from here, while the body arrives: stalled uploads count against their key.
    const principal = this.principal;
    this.#admission = await deps.limiter.admitStart({ keyId: principal.keyId, userId: principal.userId, key: principal.limits }).catch((error: unknown) => {
      throw limitError(error, route.api);
    });
    if (this.finished) {
      this.#admission.end({ tokens: 0, chargedMicros: 0n });
      return;
    }
    if (route.billing === "free") {
      const wait = deps.freeRoutes.take(this.principal.keyId);
      observeLimiter("free_routes", wait === null ? "allowed" : "refused");
      if (wait !== null) throw freeRouteLimited(deps.freeRoutes, wait);
    }

    if (this.stored) return this.#route(await this.#storedObject(this.stored));
    if (route === FILE_UPLOAD_ROUTE) return this.#route(this.#fileUpload());
    if (route === BATCH_CREATE_ROUTE) return this.#route(await this.#batchCreate());
    const contentType = String(req.headers["content-type"] ?? "");
    if (route.body === "multipart") {
      const boundary = multipartBoundary(contentType);
      if (!contentType.toLowerCase().startsWith("multipart/form-data") || !boundary) {
        throw new GatewayError("invalid_request", "This endpoint takes a multipart/form-data body.");
      }
      this.#scanner = new MultipartBodyScanner(boundary);
    } else if (route === MESSAGE_BATCH_CREATE_ROUTE) {
      if (!deps.messageBatches) throw new GatewayError("route_not_found", "Message Batches are not offered by this gateway.");
      this.#batchWorst = new MessageBatchWorstCase((m) => modelLimits(m, 0));
      this.#scanner = this.#batchWorst.scanner;
      this.#screen = deps.content?.screen() ?? null;
    } else {
      this.#scanner = new JsonBodyScanner();
      this.#screen = deps.content?.screen() ?? null;
    }
    const scanner = this.#scanner;
    const body = this.#bodyReader();
    const held: Buffer[] = [];
    let bodyDone = false;
    // Hold bytes until the routing fields are known; with billing on, read on (up to a bound) so a small body's
    // size, output cap and `n` are known for its hold; and read a body that may fit the failover buffer whole, so
    // it can be sent again to another agent (routing/failover.ts).
    const replayBytesMax = deps.routing.failover.bodyBytesMax;
    const mayReplay = declaredBytes === null || declaredBytes <= replayBytesMax;
    const wantMore = () => !scanner.settled || (deps.meter.billingOn && this.bytesIn < BILLING_SCAN_BYTES_MAX) || (mayReplay && this.bytesIn <= replayBytesMax);
    while (wantMore()) {
      const next = await body.next();
      if (next.done) {
        bodyDone = true;
        break;
      }
      this.#countIn(next.value.length);
      this.#scan(next.value);
      held.push(next.value);
      if (this.#batchWorst && !scanner.settled && this.bytesIn > deps.limits.requestBodyBytesMax) {
        // A batch is routed by its first request's model: that request is held whole until then, and no longer.
        throw new GatewayError(
          "invalid_request",
          `The first request of the batch must end within the first ${deps.limits.requestBodyBytesMax} bytes of the body (its model routes the batch).`,
        );
      }
    }
    if (this.finished) return;
    if (bodyDone) {
      scanner.end();
      if (scanner.problem) throw this.#bodyProblem(scanner.problem);
    }
    const model = scanner.fields.model;
    if (!model) {
      throw new GatewayError("model_required", this.bytesIn === 0 ? "Request body is empty; it must name a model." : "You must provide a model parameter.", {
        param: "model",
      });
    }
    this.model = model;
    this.streamed = scanner.fields.stream === true;
    const allowed = this.principal.allowedModels;
    if (allowed.length > 0 && !allowed.includes(model)) {
      throw new GatewayError("model_not_allowed", `This API key may not use the model '${model}'.`, { param: "model" });
    }

    this.#body = { held, replayable: bodyDone, rest: bodyDone ? null : body };
    await this.#route({
      pinnedAgentId: await this.#stickyAgent(scanner.fields),
      contextTokensNeeded: () => (bodyDone ? contextTokensNeeded(route, scanner.fields, held) : null),
      restriction: this.principal.agentRestriction,
    });
  }

  /**
   * A file upload: streamed to one agent with an OpenAI upstream (its body is never held: no failover), under
   * that agent's first OpenAI model (the agent picks the provider key by model; later calls on the file are asked
   * under the same one). The key's agent restriction applies (the file is new content).
   */
  #fileUpload(): RouteChoice {
    const contentType = String(this.req.headers["content-type"] ?? "");
    const boundary = multipartBoundary(contentType);
    if (!contentType.toLowerCase().startsWith("multipart/form-data") || !boundary) {
      throw new GatewayError("invalid_request", "File uploads take a multipart/form-data body with a `file` and a `purpose` field.");
    }
    // A batch input file's lines are read as they pass (its worst case, for the batch created from it later).
    const batch = new BatchInputScanner((model) => this.deps.meter.limitsOf(model));
    const scanner = new MultipartBodyScanner(boundary, (chunk) => {
      if (scanner.fields.purpose === null || scanner.fields.purpose === "batch") batch.push(chunk);
    });
    this.#scanner = scanner;
    this.#batchInput = batch;
    const restriction = this.principal!.agentRestriction;
    const host = this.deps.routing.fileHost(restriction, this.#tried);
    if (!host) {
      throw new GatewayError(
        "no_capacity",
        "No agent that keeps files (one with an OpenAI provider key) and that this API key accepts has room right now; retry later.",
        { retryAfterSeconds: this.deps.limits.noCapacityRetryAfterSeconds },
      );
    }
    this.model = host.model;
    this.#body = { held: [], replayable: false, rest: this.#bodyReader() };
    this.#fileTap = new FileObjectTap();
    return { pinnedAgentId: host.agentId, contextTokensNeeded: () => null, restriction };
  }

  /**
   * A batch create (OpenAI Batch API): its small body read whole and checked; routed (pinned) to the agent keeping
   * its input file, under the file's one model, holding the batch's worst case read from the file when it was
   * uploaded, at batch prices (docs/billing.md "Batches"). Its charge is deferred to the batch's end.
   */
  async #batchCreate(): Promise<RouteChoice> {
    if (!this.deps.deferred) {
      throw new GatewayError(
        "invalid_request",
        "Batches are not offered by this gateway: it runs with billing off, and a batch's usage is known only when it ends.",
      );
    }
    const body = this.#bodyReader();
    const held: Buffer[] = [];
    for (;;) {
      const next = await body.next();
      if (next.done) break;
      this.#countIn(next.value.length);
      if (this.bytesIn > BATCH_CREATE_BODY_BYTES_MAX)
        throw new GatewayError("body_too_large", `A batch create body is at most ${BATCH_CREATE_BODY_BYTES_MAX} bytes.`);
      held.push(next.value);
    }
    const create = parseBatchCreate(Buffer.concat(held));
    if ("problem" in create) throw new GatewayError("invalid_request", create.problem, create.param ? { param: create.param } : {});
    const fileId = create.inputFileId;
    const file = await this.deps.routing.files?.routeOf(fileId, this.principal!.userId);
    if (!file) throw new GatewayError("not_found", `No such File object: ${fileId}`, { param: "input_file_id" });
    const batch = file.batch ?? null;
    if (!batch) {
      throw new GatewayError("invalid_request", `The file '${fileId}' was not uploaded with purpose 'batch': a batch's input file must be.`, {
        param: "input_file_id",
      });
    }
    if (!batch.batchable) {
      throw new GatewayError("invalid_request", `The file '${fileId}' cannot be run as a batch through this gateway: ${batch.problem}.`, {
        param: "input_file_id",
      });
    }
    if (batch.endpoint !== create.endpoint) {
      throw new GatewayError("invalid_request", `The requests in '${fileId}' are for ${batch.endpoint}, but the batch names the endpoint ${create.endpoint}.`, {
        param: "endpoint",
      });
    }
    const allowed = this.principal!.allowedModels;
    if (allowed.length > 0 && !allowed.includes(batch.model)) {
      throw new GatewayError("model_not_allowed", `This API key may not use the model '${batch.model}' (the model of the batch's requests).`, {
        param: "model",
      });
    }
    this.model = batch.model;
    this.#pinnedFileId = fileId;
    this.#scanner = new JsonBodyScanner();
    this.#body = { held, replayable: true, rest: null };
    this.#batch = {
      worst: { inputTokens: batch.worstInputTokens, outputTokens: batch.worstOutputTokens, cachedInputTokens: 0 },
      priceBps: BATCH_PRICE_BPS,
      // A batch object carries the user's metadata (16 pairs of up to 64 + 512 characters, escaped): read up to
      // BATCH_OBJECT_BYTES_MAX as a poll does, so no metadata makes a created batch unreadable (and so unbilled).
      tap: new ObjectTap(BATCH_OBJECT_BYTES_MAX),
    };
    // The batch runs new requests at the owner's key: the API key's agent restriction applies, as for an upload.
    return { pinnedAgentId: file.agentId, contextTokensNeeded: () => null, restriction: this.principal!.agentRestriction };
  }

  /**
   * A call on a stored object: no body, and only the user whose key created the object reaches it, at the agent
   * that created it, under the model that made it. Unknown, another user's and expired ids get the same 404.
   */
  async #storedObject(call: StoredObjectCall): Promise<RouteChoice> {
    if ((this.#declaredBytes ?? 0) > 0) throw new GatewayError("invalid_request", `${call.method} ${this.route.path} takes no request body.`);
    const body = this.#bodyReader();
    for (;;) {
      const next = await body.next();
      if (next.done) break;
      if (next.value.length > 0) throw new GatewayError("invalid_request", `${call.method} ${this.route.path} takes no request body.`);
    }
    const userId = this.principal!.userId;
    const where =
      call.kind === "file"
        ? ((await this.deps.routing.files?.routeOf(call.objectId, userId)) ?? null)
        : call.kind === "message_batch"
          ? ((await this.deps.messageBatches?.routeOf(call.objectId, userId)) ?? null)
          : call.kind === "batch"
            ? ((await this.deps.deferred?.routeOf("openai_batch", call.objectId, userId)) ?? null)
            : ((await this.deps.routing.sticky?.routeOf(call.objectId, userId)) ?? null);
    if (where === null || where.model === null) {
      throw new GatewayError(
        "not_found",
        call.kind === "file"
          ? `No such File object: ${call.objectId}`
          : call.kind === "message_batch" || call.kind === "batch"
            ? `No batch found with id '${call.objectId}'.`
            : `Response with id '${call.objectId}' not found.`,
      );
    }
    // A batch whose usage is not settled yet is not deleted before its results are read (cancel it first).
    if (call.kind === "message_batch" && call.deletes && (await this.deps.deferred?.pending(call.objectId, "anthropic_batch"))) {
      await this.deps.deferred!.nudge(call.objectId, "anthropic_batch");
      throw new GatewayError(
        "conflict",
        `The message batch '${call.objectId}' has not been settled yet (its results are read for its usage once it has ended); wait for it to end, or cancel it (POST /v1/messages/batches/${call.objectId}/cancel), then delete it.`,
        { retryAfterSeconds: 2 },
      );
    }
    // A background response still being metered is not deleted before its usage is read (cancel it instead).
    if (call.kind === "response" && call.deletes && (await this.deps.deferred?.pending(call.objectId))) {
      await this.deps.deferred!.nudge(call.objectId);
      throw new GatewayError(
        "conflict",
        `Response with id '${call.objectId}' is a background response whose usage has not been settled yet; cancel it (POST /v1/responses/${call.objectId}/cancel) or wait for it to finish, then delete it.`,
        { retryAfterSeconds: 2 },
      );
    }
    this.model = where.model;
    if (call.kind === "file") this.#pinnedFileId = call.objectId;
    else this.#pinnedResponseId = call.objectId;
    this.#scanner = new JsonBodyScanner();
    this.#body = { held: [], replayable: true, rest: null };
    // No new content goes to the agent (it holds the object already): the key's agent restriction is not applied.
    return { pinnedAgentId: where.agentId, contextTokensNeeded: () => null, restriction: NO_RESTRICTION };
  }

  /** Plans the candidates, opens the hold, takes the limits and dispatches the first attempt. */
  async #route(choice: RouteChoice): Promise<void> {
    const { route, deps } = this;
    const principal = this.principal!;
    const scanner = this.#scanner!;
    const model = this.model!;
    const held = this.#body!.held;
    this.#pinnedAgentId = choice.pinnedAgentId;
    const plan = deps.routing.policy.plan({
      pinnedAgentId: choice.pinnedAgentId,
      api: route.api,
      model,
      contextTokensNeeded: choice.contextTokensNeeded,
      restriction: choice.restriction,
      exclude: this.#tried,
    });
    if (!plan.ok) throw await this.#noCandidate(plan.reason, model);
    this.#candidates = plan.candidates;
    const first = deps.routing.policy.claim(plan.candidates, model, this.#tried);
    if (!first) throw await this.#noCandidate("unavailable", model);
    this.conn = first.conn;
    try {
      this.#hold = await deps.meter.open({
        requestId: this.requestId,
        userId: principal.userId,
        planId: principal.planId,
        route: { api: route.api, unit: route.billing, multipart: route.body === "multipart" },
        model,
        fields: scanner.fields,
        agent: servedBy(first),
        inputBytes: this.#inputBytes,
        ...(this.#batchWorst ? { batch: { worst: () => this.#batchWorst!.usage(), priceBps: BATCH_PRICE_BPS } } : {}),
        ...(this.#batch ? { batch: { worst: () => this.#batch!.worst, priceBps: this.#batch.priceBps } } : {}),
      });
    } catch (error) {
      throw meterError(error, route.api);
    }
    // A file upload is no tokens (its bytes are a file the provider stores, not a prompt); nor is a batch's creation
    // (its requests run later, under the provider's batch limits; the budget sees its hold).
    this.#estimatedTokens = route === FILE_UPLOAD_ROUTE || this.#batchWorst ? 0 : estimatedTokens(scanner.fields, this.#inputBytes);
    await deps.limiter
      .admitBody(this.#admission!, {
        keyId: principal.keyId,
        key: principal.limits,
        estimatedTokens: this.#estimatedTokens,
        heldMicros: this.#hold.heldMicros,
        agentId: first.agentId,
        agent: first.profile.limits,
      })
      .catch((error: unknown) => {
        throw limitError(error, route.api);
      });
    // The client may have gone while the hold was made: settle (release) it at once.
    if (this.finished) {
      this.#hold.settle({ cause: this.endCause!, status: this.status, responded: false, dispatched: false });
      return;
    }
    for (const chunk of held) this.#hold.input(chunk);
    this.#headTimer = setTimeout(() => {
      this.stream?.reset(ResetCode.UPSTREAM_TIMEOUT, "no response head in time");
      this.fail(new GatewayError("upstream_timeout", `The provider did not answer within ${deps.limits.responseHeadTimeoutMs} ms.`), "upstream_timeout");
    }, deps.limits.responseHeadTimeoutMs);
    this.#firstDispatchAt = Date.now();
    await this.#dispatch(first);
  }

  /** The request head sent to every attempt (the same for each: the same request). */
  #requestHead(model: string): RequestHead {
    const headers: [string, string][] = [];
    for (const [name, value] of Object.entries(this.req.headers)) {
      if (FORWARDED_REQUEST_HEADERS.has(name) && typeof value === "string") headers.push([name, value]);
    }
    // The query as the request line spells it (the router parsed the URL already; no second URL object).
    const target = this.req.url ?? "/";
    const q = target.indexOf("?");
    const search = q < 0 || q === target.length - 1 ? "" : target.slice(q);
    const upstreamPath = this.stored?.upstreamPath ?? this.route.path;
    return {
      requestId: this.requestId,
      method: this.stored?.method ?? "POST",
      path: `${upstreamPath}${search === "" ? "" : forwardedQuery(this.route.api, search, upstreamPath)}`,
      api: this.route.api,
      model,
      headers,
      bodyBytes: this.#declaredBytes,
      estimatedTokens: this.#estimatedTokens,
    };
  }

  /**
   * The agent a follow-up must reach: the one that created the response its `previous_response_id` names (that
   * response lives at that agent's provider key). Throws not_found when the hub never saw that response.
   */
  async #stickyAgent(fields: BodyFields): Promise<string | null> {
    const sticky = this.deps.routing.sticky;
    const previous = fields.previousResponseId;
    let agentId: string | null = null;
    if (sticky && previous !== null && this.route.path === "/v1/responses") {
      agentId = (await sticky.routeOf(previous, this.principal!.userId))?.agentId ?? null;
      if (agentId === null) {
        throw new GatewayError("not_found", `Previous response with id '${previous}' not found.`, { param: "previous_response_id" });
      }
      this.#pinnedResponseId = previous;
    }
    return this.#fileAgent(fields, agentId);
  }

  /**
   * The agent holding the files a chat or Responses request names (`file_id`), all of them at one agent (and at the
   * one holding its previous response, when it names one): a file lives at the provider account that stored it.
   * An unknown or another user's file is a 404; files at different agents cannot be used together (400).
   */
  async #fileAgent(fields: BodyFields, pinned: string | null): Promise<string | null> {
    const files = this.deps.routing.files;
    if (!files || fields.fileIds.length === 0 || (this.route.path !== "/v1/responses" && this.route.path !== "/v1/chat/completions")) return pinned;
    let agentId = pinned;
    for (const fileId of fields.fileIds) {
      const where = await files.routeOf(fileId, this.principal!.userId);
      if (where === null) throw new GatewayError("not_found", `No such File object: ${fileId}`, { param: "file_id" });
      if (agentId !== null && where.agentId !== agentId) {
        throw new GatewayError(
          "invalid_request",
          `The file '${fileId}' is held by another provider account than ${this.#pinnedFileId !== null ? `the file '${this.#pinnedFileId}'` : "the previous response"} this request names; one request can use only what one provider account holds.`,
          { param: "file_id" },
        );
      }
      agentId = where.agentId;
      this.#pinnedFileId ??= fileId;
    }
    return agentId;
  }

  /** Why no agent can take the request, in the route's error shape. */
  async #noCandidate(reason: NoCandidate, model: string): Promise<GatewayError> {
    const { deps, route } = this;
    if (reason === "pinned_gone" && this.route === FILE_UPLOAD_ROUTE) {
      // The agent chosen for the upload left between the choice and the plan.
      return new GatewayError("no_capacity", "The agent chosen to keep this file disconnected; retry.", {
        retryAfterSeconds: deps.limits.noCapacityRetryAfterSeconds,
      });
    }
    if (reason === "pinned_gone" && this.#pinnedFileId !== null) {
      const file = this.#pinnedFileId;
      if (await deps.routing.sticky?.agentRetired(this.#pinnedAgentId!)) {
        return new GatewayError("not_found", `No such File object: ${file} (the agent whose provider account held it no longer serves).`, {
          param: this.stored ? null : "file_id",
        });
      }
      return new GatewayError(
        "no_capacity",
        this.stored
          ? `The file '${file}' is held by the provider account of an agent that is not connected now, and only it can answer for it; retry later.`
          : `The file '${file}' is held by the provider account of an agent that is not connected now or does not serve '${model}', and only it can read the file; retry later or use a model that agent serves.`,
        { retryAfterSeconds: deps.limits.noCapacityRetryAfterSeconds, ...(this.stored ? {} : { param: "file_id" }) },
      );
    }
    if (reason === "pinned_gone" && this.stored?.kind === "message_batch") {
      const batch = this.stored.objectId;
      if (await deps.routing.sticky?.agentRetired(this.#pinnedAgentId!)) {
        return new GatewayError("not_found", `No batch found with id '${batch}': the agent whose provider account held it no longer serves.`);
      }
      return new GatewayError(
        "no_capacity",
        `The message batch '${batch}' is held by the provider account of an agent that is not connected now, and only it can answer for it; retry later.`,
        { retryAfterSeconds: deps.limits.noCapacityRetryAfterSeconds },
      );
    }
    if (reason === "pinned_gone" && this.stored?.kind === "batch") {
      return new GatewayError(
        "no_capacity",
        `The batch '${this.stored.objectId}' is held by the provider account of an agent that is not connected now, and only it can answer for it; retry later.`,
        { retryAfterSeconds: deps.limits.noCapacityRetryAfterSeconds },
      );
    }
    if (reason === "pinned_gone" && this.stored) {
      const pinned = this.#pinnedResponseId;
      if (await deps.routing.sticky?.agentRetired(this.#pinnedAgentId!)) {
        return new GatewayError("not_found", `Response with id '${pinned}' not found: the agent whose provider account held it no longer serves.`);
      }
      return new GatewayError(
        "no_capacity",
        `The response '${pinned}' is held by the provider account of an agent that is not connected now, and only it can answer for it; retry later.`,
        { retryAfterSeconds: deps.limits.noCapacityRetryAfterSeconds },
      );
    }
    if (reason === "pinned_gone") {
      return new GatewayError(
        "no_capacity",
        `The response '${this.#pinnedResponseId}' is held by the provider account of an agent that is not connected now, and only it can continue it; retry later or start a new response.`,
        { retryAfterSeconds: deps.limits.noCapacityRetryAfterSeconds, param: "previous_response_id" },
      );
    }
    if (reason === "context_too_long") {
      return new GatewayError(
        "context_length_exceeded",
        `This request (its input and requested output) is longer than the context window of every agent serving '${model}'. Shorten the messages or lower the output limit.`,
        { param: "messages" },
      );
    }
    if (reason === "restricted") {
      return new GatewayError("no_capacity", `No agent this API key accepts (its owner allowlist or minimum tier) serves '${model}' right now; retry later.`, {
        retryAfterSeconds: deps.limits.noCapacityRetryAfterSeconds,
      });
    }
    const served = deps.registry.serves(route.api, model);
    const known = served || (await deps.knownModels(route.api)).has(model);
    if (!known) return new GatewayError("model_not_found", `The model '${model}' does not exist or you do not have access to it.`, { param: "model" });
    const why = served ? "every agent serving it is busy, paused or failing" : "no connected agent serves it";
    return new GatewayError(
      "no_capacity",
      `The model '${model}' is not available right now: ${why}. Retry later; GET /v1/models lists the models available now.`,
      {
        retryAfterSeconds: deps.limits.noCapacityRetryAfterSeconds,
      },
    );
  }

  /**
   * One attempt: opens a stream on the candidate's connection and sends the body — the held bytes, then (when the
   * body was too large to hold whole) the rest as it arrives. Each chunk is scanned (and the hold grown to cover
   * it) before it is forwarded: a body that turns out unacceptable never reaches the provider whole.
   */
  async #dispatch(candidate: Candidate): Promise<void> {
    const { route } = this;
    const model = this.model!;
    this.#tried.add(candidate.agentId);
    this.conn = candidate.conn;
    this.#dispatched = false;
    const attempt: Attempt = { candidate, dispatchedAt: Date.now(), healthy: false, judged: false };
    this.#attempt = attempt;
    const stream = candidate.conn.openStream(this.#requestHead(model), {
      response: (h) => this.#onAttemptResponse(attempt, h.status, h.headers),
      data: (chunk) => this.#onData(chunk),
      end: () => this.#onAttemptEnd(attempt),
      reset: (code, reason, cause) => this.#onAttemptReset(attempt, code, reason, cause),
    });
    this.stream = stream;
    const body = this.#body!;
    const hold = this.#hold!;
    try {
      // Held bytes with credit for them leave at once: OPEN, DATA and END of a small body go as one message.
      for (const chunk of body.held) if (!stream.sendNow(chunk)) await stream.sendData(chunk);
      const rest = body.rest;
      if (rest) {
        // Too large to replay: forwarded as it arrives, held no more.
        body.held = [];
        for (;;) {
          const next = await rest.next();
          if (next.done) break;
          this.#countIn(next.value.length);
          if (this.finished) return;
          this.#scan(next.value);
          await hold.grow(this.#inputBytes).catch((error: unknown) => {
            throw meterError(error, route.api);
          });
          if (this.finished) return;
          hold.input(next.value);
          await stream.sendData(next.value);
        }
        this.#scanner!.end();
        if (this.#scanner!.problem) throw this.#bodyProblem(this.#scanner!.problem);
      }
      stream.end();
      this.#dispatched = true;
    } catch (error) {
      if (error instanceof GatewayError) throw error;
      if (stream.closed || this.finished) return; // reset (maybe failed over) or client gone: already answered
      throw error;
    }
  }

  /** The request body's reader: a 408 when no byte arrives within the body idle limit. */
  #bodyReader(): BodyReader {
    const idleMs = this.deps.limits.requestBodyIdleTimeoutMs;
    return new BodyReader(
      this.req,
      idleMs,
      () => new GatewayError("request_timeout", `The request body stalled: no bytes for ${idleMs} ms (the limit while a body is sent).`),
    );
  }

  /**
   * The next candidate to fail over to, claimed — or null when the request may not be tried again: its body is
   * not held whole, the attempt or time bound is reached, or no candidate is left.
   */
  #nextCandidate(): Candidate | null {
    const limits = this.deps.routing.failover;
    // Never after a response head (a batch object's head waits at the hub, unsent, yet the batch exists).
    if (!this.#body?.replayable || this.finished || this.res.headersSent || this.firstByteAt !== null) return null;
    if (this.#tried.size >= limits.attemptsMax || Date.now() - this.#firstDispatchAt > limits.windowMs) return null;
    return this.deps.routing.policy.claim(this.#candidates, this.model!, this.#tried);
  }

  /** The failed attempt is over (its stream closed); the request goes on with the next candidate. */
  #failOver(next: Candidate, why: string): void {
    const failed = this.#attempt!.candidate;
    this.deps.log.warn("proxy.failover", { requestId: this.requestId, from: failed.agentId, to: next.agentId, why });
    this.deps.routing.ended("failed_over");
    this.#attempt = null;
    this.stream = null;
    void this.#hold!.serveBy(servedBy(next))
      .then(() => {
        if (this.finished) return;
        return this.#dispatch(next);
      })
      .catch((error: unknown) => this.#failAttempt(error));
  }

  /** A failed-over attempt threw: answer the client (nothing of a response reached it yet). */
  #failAttempt(error: unknown): void {
    if (error instanceof GatewayError) this.fail(error, "gateway_error");
    else {
      this.deps.log.error("proxy.failover_failed", { requestId: this.requestId, error });
      this.fail(new GatewayError("internal_error", "The gateway had an error while processing your request."), "gateway_error");
    }
  }

  #onAttemptResponse(attempt: Attempt, status: number, headers: [string, string][]): void {
    if (attempt !== this.#attempt || this.finished) return;
    const { agentId } = attempt.candidate;
    const routing = this.deps.routing;
    if (agentFaultStatus(status)) {
      this.#failed(attempt);
      const next = this.#nextCandidate();
      if (next) {
        // Nothing of this answer reached the user: drop it, close the stream (the agent stops reading the
        // provider's body) and try the next agent.
        this.stream?.reset(ResetCode.CANCEL, "failing over to another agent");
        this.#failOver(next, `status ${status}`);
        return;
      }
    } else {
      routing.responded(agentId, this.model!, Date.now() - attempt.dispatchedAt);
      attempt.healthy = true;
    }
    routing.ended("served");
    this.#onResponse(status, headers);
  }

  /** The attempt failed by the agent's fault: its breaker and score hear of it. */
  #failed(attempt: Attempt): void {
    attempt.judged = true;
    this.deps.routing.failed(attempt.candidate.agentId, this.model!);
  }

  #onAttemptEnd(attempt: Attempt): void {
    if (attempt !== this.#attempt) return;
    if (attempt.healthy) this.deps.routing.served(attempt.candidate.agentId, this.model!);
    attempt.judged = true;
    this.#onEnd();
  }

  #onAttemptReset(attempt: Attempt, code: number, reason: string, cause: "agent" | "connection"): void {
    if (attempt !== this.#attempt || this.finished) return;
    const routing = this.deps.routing;
    if (!this.res.headersSent && retryableReset(code, cause)) {
      // An agent at its own rate limit is healthy: its breaker does not count it (routing puts it last meanwhile).
      if (code === ResetCode.RATE_LIMITED && cause === "agent") attempt.judged = true;
      else this.#failed(attempt);
      const next = this.#nextCandidate();
      if (next) {
        this.#failOver(next, cause === "connection" ? "connection lost" : `reset ${code}`);
        return;
      }
      routing.ended("failed");
    } else if (this.res.headersSent || code === ResetCode.UPSTREAM_RESET || code === ResetCode.UPSTREAM_TIMEOUT) {
      // Broken mid-body, or no answer in time: the agent's failure, but the request is not tried again.
      this.#failed(attempt);
      if (!this.res.headersSent) routing.ended("failed");
    } else {
      routing.ended("failed");
    }
    this.#onReset(code, reason, cause);
  }

  /** The largest body this route takes: a file upload's own limit, else the request limit. */
  get #bodyBytesMax(): number {
    if (this.route === MESSAGE_BATCH_CREATE_ROUTE) return this.deps.limits.messageBatchBodyBytesMax;
    return this.route === FILE_UPLOAD_ROUTE ? this.deps.limits.fileUploadBytesMax : this.deps.limits.requestBodyBytesMax;
  }

  #countIn(n: number): void {
    this.bytesIn += n;
    if (this.bytesIn > this.#bodyBytesMax) {
      throw new GatewayError("body_too_large", `Request body exceeds the limit of ${this.#bodyBytesMax} bytes.`);
    }
  }

  /** (Re)starts the response's idle limit: one timer per request, restarted per chunk. */
  #armIdle(): void {
    if (this.#idleTimer) {
      this.#idleTimer.refresh();
      return;
    }
    this.#idleTimer = setTimeout(() => {
      this.stream?.reset(ResetCode.UPSTREAM_TIMEOUT, "response stalled");
      this.#finish("upstream_timeout", this.status || 504);
      this.res.destroy();
    }, this.deps.limits.streamIdleTimeoutMs);
  }

  #onResponse(status: number, headers: [string, string][]): void {
    if (this.finished || this.res.headersSent) return;
    if (this.#headTimer) clearTimeout(this.#headTimer);
    this.status = status;
    this.firstByteAt = Date.now();
    const out: Record<string, string | string[]> = { "x-wellspring-request-id": this.requestId };
    for (const [name, value] of headers) {
      if (RESPONSE_HEADERS_DROPPED.has(name)) continue;
      const prev = out[name];
      out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
    const lengths = headers.filter(([n]) => n === "content-length").map(([, v]) => v);
    if (lengths.length > 0 && status !== 204 && status !== 304 && this.req.method !== "HEAD") {
      if (lengths.length !== 1 || !/^\d{1,15}$/.test(lengths[0]!)) {
        // Several lengths, or not a length: no body can be trusted to match it.
        this.#onAgentLengthMismatch("response head with an invalid content-length");
        return;
      }
      this.#declaredLength = Number(lengths[0]);
    }
    this.#hold?.response(status, headers.find(([n]) => n === "content-type")?.[1] ?? "");
    if (status < 300 && this.route.path === "/v1/responses" && this.deps.routing.sticky) this.#responseIdTap = new ResponseIdTap();
    // A deleted response or file is gone at its provider: its route goes too.
    if (status < 300 && this.stored?.deletes) {
      if (this.stored.kind === "file") void this.deps.routing.files?.forget(this.stored.objectId);
      else if (this.stored.kind === "message_batch") void this.deps.messageBatches?.forget(this.stored.objectId);
      else void this.deps.routing.sticky?.forget(this.stored.objectId);
    }
    if (status >= 300) this.#fileTap = null;
    if (status < 300 && this.#answersBatchObject()) {
      // Held until its end (bounded): its `results_url` is rewritten before the client sees it.
      this.#batchAnswer = { status, headers, chunks: [], bytes: 0 };
      this.#armIdle();
      return;
    }
    this.res.writeHead(status, out);
    // The head leaves with the first body bytes (and, for a small answer, the end) in one write: they
    // usually arrive in the same tunnel message. A head whose body does not follow in this turn goes alone.
    setImmediate(() => {
      if (this.#bodyWritten || this.finished || this.res.destroyed) return;
      this.res.flushHeaders();
    });
    this.#armIdle();
  }

  #onData(chunk: Uint8Array): void {
    if (this.finished) return;
    const batchAnswer = this.#batchAnswer;
    if (batchAnswer) {
      batchAnswer.bytes += chunk.length;
      if (batchAnswer.bytes > MESSAGE_BATCH_OBJECT_BYTES_MAX) return this.#onAgentLengthMismatch("a message batch object longer than any");
      batchAnswer.chunks.push(chunk.slice());
      this.bytesOut += chunk.length;
      this.#hold?.output(chunk);
      this.#armIdle();
      this.stream?.consumed(chunk.length);
      return;
    }
    if (this.#declaredLength !== null && this.bytesOut + chunk.length > this.#declaredLength) {
      this.#onAgentLengthMismatch("response body longer than its content-length");
      return;
    }
    this.bytesOut += chunk.length;
    this.#hold?.output(chunk);
    this.#fileTap?.push(chunk);
    this.#batch?.tap.push(chunk);
    if (this.#responseIdTap) {
      const id = this.#responseIdTap.push(chunk);
      if (id !== null) {
        this.#responseIdTap = null;
        this.#createdResponseId = id;
        void this.deps.routing.sticky?.record(id, { agentId: this.conn!.agentId!, userId: this.principal!.userId, model: this.model! });
      }
    }
    this.#armIdle();
    const n = chunk.length;
    this.#bodyWritten = true;
    if (this.res.write(chunk)) {
      this.stream?.consumed(n);
      return;
    }
    // The client is slower than the agent: hold the credit until its socket drains.
    if (this.#pendingConsume === 0) {
      this.res.once("drain", () => {
        const pending = this.#pendingConsume;
        this.#pendingConsume = 0;
        this.stream?.consumed(pending);
      });
    }
    this.#pendingConsume += n;
  }

  /** The agent's body and its declared length disagree: the client's connection is cut, never given other bytes. */
  #onAgentLengthMismatch(reason: string): void {
    this.deps.log.warn("proxy.agent_length_mismatch", {
      requestId: this.requestId,
      agentId: this.conn?.agentId,
      declared: this.#declaredLength,
      sent: this.bytesOut,
      reason,
    });
    this.stream?.reset(ResetCode.PROTOCOL_ERROR, reason);
    this.#finish("upstream_error", this.status || 502);
    this.res.destroy();
  }

  #onEnd(): void {
    if (this.finished) return;
    if (this.#declaredLength !== null && this.bytesOut !== this.#declaredLength) {
      this.#onAgentLengthMismatch("response body shorter than its content-length");
      return;
    }
    const tap = this.#fileTap;
    if (tap) {
      this.#fileTap = null;
      void this.#recordFile(tap).then(() => this.#onEnd());
      return;
    }
    const batchAnswer = this.#batchAnswer;
    if (batchAnswer) {
      this.#batchAnswer = null;
      void this.#answerBatch(batchAnswer);
      return;
    }
    // The client gets the end of its response first; settling (usage check, tokenizer counts) comes after it.
    this.res.end();
    this.#finish(this.status >= 400 ? "upstream_error" : "completed", this.status);
  }

  /** The answer is a batch object the hub rewrites: a batch's creation, retrieval or cancel (not its results or deletion). */
  #answersBatchObject(): boolean {
    if (this.route === MESSAGE_BATCH_CREATE_ROUTE) return true;
    const s = this.stored;
    return s !== null && s.kind === "message_batch" && !s.deletes && !s.upstreamPath.endsWith("/results");
  }

  /**
   * A batch object arrived whole: a new batch's route is written (before the client hears of it, so any gateway
   * routes its next calls), the hub's copy updated, and the object sent with its `results_url` the hub's path.
   * An answer that is not a batch object is not passed on (502): the hub would lose the batch.
   */
  async #answerBatch(answer: { status: number; headers: [string, string][]; chunks: Uint8Array[] }): Promise<void> {
    const object = parseBatchObject(Buffer.concat(answer.chunks));
    const batches = this.deps.messageBatches!;
    if (object === null) {
      this.deps.log.warn("message_batch.answer_unread", { requestId: this.requestId, agentId: this.conn?.agentId });
      this.#finish("upstream_error", 502);
      sendError(this.res, "anthropic", new GatewayError("agent_unreachable", "The provider's answer was not a message batch."), this.requestId);
      return;
    }
    if (this.route === MESSAGE_BATCH_CREATE_ROUTE) {
      const route = { agentId: this.conn!.agentId!, userId: this.principal!.userId, model: this.model!, requestId: this.requestId };
      // Known as created before the route's write: a client leaving meanwhile still leaves a batch that is settled.
      this.#createdBatch = { id: object.id, object };
      await batches.record(object.id, route, object).catch(() => undefined);
    } else await batches.seen(object);
    if (this.finished) return;
    const body = Buffer.from(JSON.stringify(object));
    const out: Record<string, string | string[]> = { "x-wellspring-request-id": this.requestId };
    for (const [name, value] of answer.headers) {
      if (RESPONSE_HEADERS_DROPPED.has(name) || name === "content-length") continue;
      const prev = out[name];
      out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
    out["content-length"] = String(body.length);
    this.#bodyWritten = true;
    this.res.writeHead(answer.status, out).end(body);
    this.#finish("completed", answer.status);
  }

  /**
   * An upload succeeded: its file's route is written before the client hears of it, so any gateway routes the
   * calls the client makes next. A file object the hub cannot read, or a route it cannot write, is logged: the
   * client still gets the provider's answer (the file exists at the provider), but the hub cannot reach it.
   */
  async #recordFile(tap: FileObjectTap): Promise<void> {
    const file = tap.fileObject();
    if (!file) {
      this.deps.log.warn("files.upload_unread", { requestId: this.requestId, agentId: this.conn?.agentId });
      return;
    }
    await this.deps.routing.files
      ?.record(file.id, {
        agentId: this.conn!.agentId!,
        userId: this.principal!.userId,
        model: this.model!,
        purpose: file.purpose,
        bytes: file.bytes,
        createdAt: file.createdAt,
        batch: file.purpose === "batch" && this.#batchInput ? this.#batchInput.end() : null,
      })
      .catch(() => undefined);
  }

  #onReset(code: number, reason: string, cause: "agent" | "connection"): void {
    if (this.finished) return;
    const endCause: EndCause =
      cause === "connection"
        ? "agent_lost"
        : code === ResetCode.UPSTREAM_TIMEOUT
          ? "upstream_timeout"
          : code === ResetCode.REFUSED ||
              code === ResetCode.RATE_LIMITED ||
              code === ResetCode.STREAM_LIMIT ||
              code === ResetCode.ENDPOINT_FORBIDDEN ||
              code === ResetCode.PATH_FORBIDDEN ||
              code === ResetCode.BODY_REFUSED ||
              code === ResetCode.SHUTTING_DOWN
            ? "refused"
            : "upstream_error";
    this.deps.log.warn("proxy.stream_reset", { requestId: this.requestId, agentId: this.conn?.agentId, code, reason, cause });
    if (this.res.headersSent) {
      // Mid-body: cut the client's connection so it sees a truncated response, never a forged ending.
      this.#finish(endCause, this.status);
      this.res.destroy();
      return;
    }
    const agentRetryMs = code === ResetCode.RATE_LIMITED ? rateLimitedRetryMs(reason) : 0;
    const error =
      code === ResetCode.RATE_LIMITED
        ? // Every candidate's own rate limit (the owner's, or the provider's as the agent learnt it) is full.
          new GatewayError("rate_limited", `The capacity serving this model is at its rate limit. Retry in ${Math.ceil(agentRetryMs / 1000)} s.`, {
            retryAfterSeconds: Math.ceil(agentRetryMs / 1000),
            retryAfterMs: agentRetryMs,
          })
        : code === ResetCode.PATH_FORBIDDEN
          ? new GatewayError("forbidden", `The agent serving this model does not forward POST ${this.route.path}.`)
          : code === ResetCode.BODY_REFUSED
            ? // The hub read the body and found it acceptable; the agent, reading it too, did not: never forwarded.
              new GatewayError("invalid_request", "The request body was refused upstream: it does not read as the request it was routed as.")
            : endCause === "upstream_timeout"
              ? new GatewayError("upstream_timeout", "The provider did not answer in time.")
              : endCause === "refused"
                ? new GatewayError("no_capacity", "The selected capacity refused the request; retry shortly.", {
                    retryAfterSeconds: this.deps.limits.noCapacityRetryAfterSeconds,
                  })
                : new GatewayError("agent_unreachable", "The request could not be completed upstream; retry shortly.");
    this.#finish(endCause, error.status);
    sendError(this.res, this.route.api, error, this.requestId);
  }
}

export async function proxyRequest(
  req: IncomingMessage,
  res: ServerResponse,
  route: ProxyRoute,
  deps: ProxyDeps,
  stored: StoredObjectCall | null = null,
): Promise<void> {
  const exchange = new ProxyExchange(req, res, route, deps, stored);
  try {
    await exchange.run();
  } catch (error) {
    if (error instanceof GatewayError) {
      const refused =
        error.code === "no_capacity" ||
        error.code === "insufficient_quota" ||
        error.code === "rate_limited" ||
        error.code === "budget_exceeded" ||
        error.code === "service_unavailable";
      exchange.fail(error, refused ? "refused" : "gateway_error");
      return;
    }
    if (isUnavailable(error)) {
      deps.log.warn("proxy.database_unavailable", { requestId: exchange.requestId, error });
      exchange.fail(ledgerUnavailable(error), "refused");
      return;
    }
    deps.log.error("proxy.failed", { requestId: exchange.requestId, error });
    exchange.fail(new GatewayError("internal_error", "The gateway had an error while processing your request."), "gateway_error");
  }
}

/**
 * Once the settlement is durable, the agent that served the request gets its statement, with the hub's sealed record
 * of the request (ledger/hub_record.ts), and signs a receipt.
 */
function sendStatement(
  conn: AgentLink,
  statement: SettlementStatement | null,
  written: Promise<SettleOutcome> | null,
  sealer: HubRecordSealer | null,
  recordJson: string | null,
): void {
  if (!statement || !written || conn.keepsLedger === false) return;
  void written.then(
    (outcome) => {
      if (!sealer) return conn.sendSettlement(statement);
      // The settlement row comes back from its write; a spooled settlement is offered again once written.
      const reservation = "reservation" in outcome ? outcome.reservation : null;
      if (reservation) conn.sendSettlement(sealer.seal(statement, reservation, recordJson));
    },
    () => undefined, // not settled: no statement (the failure is logged by the meter)
  );
}

/** The deferred settlement kind a stored-object call's object is polled as. */
function deferredKindOf(call: StoredObjectCall): DeferredKind {
  return call.kind === "batch" ? "openai_batch" : call.kind === "message_batch" ? "anthropic_batch" : "response";
}
