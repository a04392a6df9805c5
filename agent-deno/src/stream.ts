/**
 * One proxied call at the agent, over the agent's own HTTP/1.1 client (upstream_http.ts): the request body
 * arrives as DATA frames and is written to the provider's socket (credit goes back to the hub only once a
 * write has completed); the response body is read only as fast as the hub grants credit, so a slow user slows
 * the provider read, not the agent's memory. A RESET from the hub closes the provider connection.
 */
import {
  type BodyScanner,
  concatBytes,
  encodeEnd,
  encodeReset,
  encodeResponse,
  encodeWindow,
  jsonBytes,
  JsonBodyScanner,
  MessageBatchScanner,
  MultipartBodyScanner,
  multipartBoundary,
  RecvWindow,
  ResetCode,
  RESPONSE_HEADERS_DROPPED,
  SendWindow,
  sendNow,
  sendWithCredit,
  type RequestHead,
  type WindowGrowth,
} from "../../protocol/src/mod.ts";
import { authHeaders, type Upstream } from "./providers.ts";
import { ProxyError } from "./egress_proxy.ts";
import {
  chunkFrame,
  headWithBody,
  LAST_CHUNK,
  requestHead,
  ResponseParser,
  SHARED_POOL,
  splitUrl,
  type UpstreamConnection,
  type UpstreamPool,
} from "./upstream_http.ts";
import { AGENT_VERSION } from "./version.ts";
import { BATCH_CREATE_PATH, FILE_UPLOAD_PATH, isMessageBatchCreate, isStoredResponseCall } from "./forward_rules.ts";
import { ERROR_BODY_BYTES_MAX } from "./context_windows.ts";
import type { Log } from "./log.ts";

export interface StreamHost {
  send(frame: Uint8Array): void;
  connectionSendWindow(): SendWindow;
  /** The connection's receive-window growth (protocol/src/flow.ts): a fast provider's request body is not held to one window per round trip. */
  readonly windowGrowth?: WindowGrowth;
  forget(id: number): void;
  /** The stream is over: how it ended. */
  ended?(stream: AgentStream, outcome: StreamOutcome): void;
  /**
   * The provider's response head arrived: its status and a reader of its headers by lower-case name (the rate
   * governor reads its rate-limit headers).
   */
  providerResponse?(stream: AgentStream, status: number, header: (name: string) => string | null): void;
  /**
   * Before the provider call: may it go to the provider's endpoint (endpoint_check.ts)? Null when it may, or the
   * RESET to refuse it with. Absent: no check (a development upstream without `--dev-resolve`).
   */
  checkEndpoint?(): Promise<{ code: ResetCode; reason: string } | null>;
  /** The provider answered 400: the first ERROR_BODY_BYTES_MAX bytes of its body (read as they pass, not kept). */
  providerError?(provider: string, model: string, body: string): void;
  /** Keep-alive connections to the providers (one pool per agent process unless a test brings its own). */
  readonly pool?: UpstreamPool;
  readonly log: Log;
}

/** How a stream ended at the agent: the provider's whole answer went back; the agent reset it; the hub did; the tunnel dropped. */
export type StreamOutcome = "completed" | "reset" | "cancelled" | "abandoned";

/** Longest wait for the provider's response head, ms. */
export const UPSTREAM_HEAD_TIMEOUT_MS = 600_000;

export class AgentStream {
  readonly sendWindow: SendWindow;
  readonly recvWindow: RecvWindow;
  readonly #abort = new AbortController();
  #bodyQueue: Uint8Array[] = [];
  #bodyEnded = false;
  /** Request body bytes received from the hub so far (held to the head's `bodyBytes`). */
  #bodyReceived = 0;
  #bodyWaiter: (() => void) | null = null;
  #closed = false;
  /** The provider connection this stream holds; closed (not pooled) when the stream ends early. */
  #conn: UpstreamConnection | null = null;
  /** A streamed request body went to the provider whole (the connection may then serve another call). */
  #bodySent = false;
  readonly startedAt = Date.now();
  upstreamBytes = 0;
  /** The provider's HTTP status, once its response head arrived. */
  status: number | null = null;
  /**
   * Reads the body the way the provider will, so a body that names another model than the head the agent was
   * asked to serve (or repeats a routing field) never reaches the provider whole.
   */
  readonly #scanner: BodyScanner;
  /** A call on a stored response or file: it must carry no body (and names no model in one). */
  readonly #bodyless: boolean;
  /** A Files API upload or a batch create: a body that names no model (the head's model picks the provider key). */
  readonly #fileUpload: boolean;

  constructor(
    readonly id: number,
    readonly head: RequestHead,
    readonly upstream: Upstream,
    /** Where the call goes: an allowlisted path on the provider's official origin (tunnel.ts checks it). */
    readonly url: string,
    private readonly host: StreamHost,
    peerStreamWindowBytes: number,
    ownStreamWindowBytes: number,
  ) {
    this.sendWindow = new SendWindow(peerStreamWindowBytes);
    this.recvWindow = new RecvWindow(ownStreamWindowBytes, host.windowGrowth ?? null);
    const contentType = head.headers.find(([n]) => n === "content-type")?.[1] ?? "";
    const boundary = contentType.toLowerCase().startsWith("multipart/form-data") ? multipartBoundary(contentType) : null;
    // A Message Batch's body lists requests: each must name the head's model (one model per batch).
    this.#scanner = boundary
      ? new MultipartBodyScanner(boundary)
      : isMessageBatchCreate(head.api, head.path)
        ? new MessageBatchScanner()
        : new JsonBodyScanner();
    this.#bodyless = isStoredResponseCall(head.api, head.path);
    const path = head.path.split("?")[0];
    this.#fileUpload = head.api === "openai" && ((path === FILE_UPLOAD_PATH && boundary !== null) || (path === BATCH_CREATE_PATH && boundary === null));
  }

  /**
   * Checks `chunk` (or, with `end`, the whole body) before it goes on: true when the body may continue; false
   * after refusing the stream with BODY_REFUSED.
   */
  #bodyAllowed(chunk: Uint8Array | null, end: boolean): boolean {
    if (this.#bodyless) {
      if (!chunk || chunk.length === 0) return true;
      this.host.log.warn("stream.body_refused", { requestId: this.head.requestId, streamId: this.id, problem: "a call on a stored object takes no body" });
      this.#reset(ResetCode.BODY_REFUSED, "a call on a stored object takes no body");
      return false;
    }
    const scanner = this.#scanner;
    if (chunk) scanner.push(chunk);
    if (end) scanner.end();
    const model = scanner.fields.model;
    const problem =
      scanner.problem ??
      (model !== null && model !== this.head.model
        ? "the body names another model than the request head"
        : end && model === null && !this.#fileUpload
          ? "the body names no model"
          : null);
    if (problem === null) return true;
    this.host.log.warn("stream.body_refused", { requestId: this.head.requestId, streamId: this.id, problem });
    this.#reset(ResetCode.BODY_REFUSED, problem);
    return false;
  }

  get closed(): boolean {
    return this.#closed;
  }

  // --- from the hub ---

  /**
   * A DATA frame of the request body. A body is held to the length its head declared here, for a small body
   * (sent whole with the head) and a streamed one alike: more bytes than declared, or an END short of it,
   * resets the stream with PROTOCOL_ERROR before the body is read for its content (BODY_REFUSED comes after).
   */
  onData(chunk: Uint8Array): boolean {
    if (this.#bodyEnded) return false;
    if (this.#closed) return true;
    if (!this.recvWindow.receive(chunk.length)) return false;
    this.#bodyReceived += chunk.length;
    const declared = this.head.bodyBytes;
    if (declared !== null && this.#bodyReceived > declared) {
      this.#reset(ResetCode.PROTOCOL_ERROR, "request body longer than its head said");
      return true;
    }
    // The frame buffer belongs to the socket layer: keep a copy only as long as fetch has not taken it.
    this.#bodyQueue.push(chunk.slice());
    this.#bodyWaiter?.();
    return true;
  }

  onEnd(): void {
    if (this.#bodyEnded || this.#closed) return;
    this.#bodyEnded = true;
    const declared = this.head.bodyBytes;
    if (declared !== null && this.#bodyReceived !== declared) {
      this.#reset(ResetCode.PROTOCOL_ERROR, "request body shorter than its head said");
      return;
    }
    this.#bodyWaiter?.();
  }

  onWindow(increment: number): boolean {
    return this.sendWindow.grant(increment);
  }

  /** The hub reset the stream (user cancelled, timeout): abort the provider call now. */
  onReset(reason: string): void {
    if (this.#closed) return;
    this.host.log.info("stream.cancelled", { requestId: this.head.requestId, streamId: this.id, reason });
    this.#close(new DOMException(`cancelled by hub: ${reason}`, "AbortError"), "cancelled");
  }

  /** The tunnel dropped: abort without telling anyone. */
  abandon(): void {
    this.#close(new DOMException("tunnel lost", "AbortError"), "abandoned");
  }

  /** `reason` null: the call completed, nothing to abort (and no exception object to make per stream). */
  #close(reason: unknown | null, outcome: StreamOutcome): void {
    if (this.#closed) return;
    this.#closed = true;
    if (reason !== null) {
      this.#abort.abort(reason);
      this.#conn?.close();
      this.#conn = null;
    }
    this.sendWindow.close();
    this.recvWindow.release();
    this.#bodyWaiter?.();
    this.host.forget(this.id);
    this.host.ended?.(this, outcome);
  }

  #reset(code: number, reason: string): void {
    if (this.#closed) return;
    this.host.send(encodeReset(this.id, code, reason));
    this.#close(new DOMException(reason, "AbortError"), "reset");
  }

  /**
   * Writes a body larger than one stream window to the provider as it arrives: raw after a Content-Length,
   * or chunked when the client sent none. Credit goes back to the hub once a write has completed, so the
   * provider's pace bounds what the agent holds. A write error ends the pump only: the response read decides.
   */
  async #pumpBody(conn: UpstreamConnection, chunked: boolean): Promise<void> {
    try {
      for (;;) {
        while (this.#bodyQueue.length === 0 && !this.#bodyEnded && !this.#closed) {
          await new Promise<void>((resolve) => (this.#bodyWaiter = resolve));
          this.#bodyWaiter = null;
        }
        if (this.#closed) return;
        const chunk = this.#bodyQueue.shift() ?? null;
        if (!this.#bodyAllowed(chunk, !chunk)) return;
        if (chunk) {
          await conn.write(chunked ? chunkFrame(chunk) : chunk);
          const inc = this.recvWindow.consume(chunk.length);
          if (inc > 0 && !this.#closed) this.host.send(encodeWindow(this.id, inc));
          continue;
        }
        if (chunked) await conn.write(LAST_CHUNK);
        this.#bodySent = true;
        return;
      }
    } catch {
      // The provider stopped reading (it may have answered already, e.g. 413): the response read decides.
    }
  }

  /**
   * A body that fits in one stream window arrives without waiting for credit, so waiting for all of it is
   * free; it then goes to the provider as one buffer, written with the request head (a streamed body is
   * written after the head, and a small second write can wait ~40 ms for a delayed ACK).
   */
  async #smallBody(): Promise<Uint8Array | null> {
    const expected = this.head.bodyBytes;
    if (expected === null || expected > this.recvWindow.sizeBytes) return null;
    while (!this.#bodyEnded && !this.#closed) {
      await new Promise<void>((resolve) => (this.#bodyWaiter = resolve));
      this.#bodyWaiter = null;
    }
    if (this.#closed) return null;
    const body = concatBytes(this.#bodyQueue);
    if (!this.#bodyAllowed(body, true)) return null;
    const inc = this.recvWindow.consume(body.length);
    if (inc > 0) this.host.send(encodeWindow(this.id, inc));
    this.#bodyQueue = [];
    return body;
  }

  /** Runs the provider call to completion, reset or abort. Never throws. */
  async run(): Promise<void> {
    const refusal = (await this.host.checkEndpoint?.()) ?? null;
    if (this.#closed) return;
    if (refusal) {
      this.#reset(refusal.code, refusal.reason);
      return;
    }
    const { origin, target } = splitUrl(this.url);
    const own: [string, string][] = authHeaders(this.upstream);
    if (this.upstream.provider === "anthropic" && !this.head.headers.some(([n]) => n === "anthropic-version")) own.push(["anthropic-version", "2023-06-01"]);
    // Bytes must reach the user as the provider sent them: ask for no compression.
    own.push(["accept-encoding", "identity"], ["user-agent", `wellspring-agent/${AGENT_VERSION}`]);
    let head: string;
    try {
      head = requestHead(this.head.method, origin, target, this.head.headers, own, this.head.bodyBytes);
    } catch (error) {
      this.#reset(ResetCode.PROTOCOL_ERROR, (error as Error).message);
      return;
    }
    const small = await this.#smallBody();
    if (this.#closed) return;
    const pool = this.host.pool ?? SHARED_POOL;
    const headTimer = setTimeout(() => this.#reset(ResetCode.UPSTREAM_TIMEOUT, "provider did not answer in time"), UPSTREAM_HEAD_TIMEOUT_MS);
    let parser: ResponseParser;
    let body: Uint8Array;
    let conn: UpstreamConnection;
    /** Some byte of this request was accepted by a socket: the provider may have the call. */
    let reached = false;
    try {
      // The retry rule (ARCHITECTURE, "The agent's provider client"): a call is sent again only when it is
      // provable that the provider never got it — a reused connection the provider had closed, whose socket
      // refused the request's first write with no byte accepted. Once any byte of the request was written the
      // provider may have the call: a failure then resets the stream with UPSTREAM_RESET, which the hub does not
      // send to another agent (a second provider call would charge the owner twice).
      for (let attempt = 0; ; attempt++) {
        conn = await pool.acquire(origin, attempt > 0);
        if (this.#closed) {
          conn.close();
          return;
        }
        this.#conn = conn;
        parser = new ResponseParser(this.head.method);
        const writtenBefore = conn.bytesWritten;
        try {
          if (small) {
            await conn.write(headWithBody(head, small));
            this.#bodySent = true;
          } else {
            await conn.write(headWithBody(head, null));
            void this.#pumpBody(conn, this.head.bodyBytes === null);
          }
          body = await this.#readHead(conn, parser);
          break;
        } catch (error) {
          if (this.#closed) return;
          this.#conn = null;
          conn.close();
          reached = conn.bytesWritten > writtenBefore;
          if (reached || attempt > 0 || conn.served === 0) throw error;
        }
      }
    } catch (error) {
      if (!this.#closed) {
        const name = (error as Error).name;
        if (reached) {
          this.host.log.warn("stream.upstream_broken", { requestId: this.head.requestId, provider: this.upstream.provider, error: name, phase: "head" });
          this.#reset(ResetCode.UPSTREAM_RESET, "provider connection broke after the request was sent");
        } else {
          // A proxy's refusal says which proxy and status (never its credentials): what the owner needs to fix it.
          const detail = error instanceof ProxyError ? { detail: error.message } : {};
          this.host.log.warn("stream.upstream_unreachable", { requestId: this.head.requestId, provider: this.upstream.provider, error: name, ...detail });
          this.#reset(ResetCode.UPSTREAM_UNREACHABLE, "provider unreachable");
        }
      }
      return;
    } finally {
      clearTimeout(headTimer);
    }
    if (this.#closed) return;
    const response = parser.head!;
    const outHeaders: [string, string][] = [];
    for (const [name, value] of response.headers) if (!RESPONSE_HEADERS_DROPPED.has(name)) outHeaders.push([name, value]);
    this.status = response.status;
    this.host.providerResponse?.(this, response.status, (name) => response.headers.find(([n]) => n === name)?.[1] ?? null);
    this.host.send(encodeResponse(this.id, jsonBytes({ status: response.status, headers: outHeaders })));
    // A 400's first bytes, for a context-length error (the agent learns the model's window from it).
    let errorHead: Uint8Array[] | null = response.status === 400 && this.host.providerError ? [] : null;
    let errorHeadBytes = 0;
    const windows = { stream: this.sendWindow, connection: this.host.connectionSendWindow() };
    const send = (f: Uint8Array) => this.host.send(f);
    const isClosed = () => this.#closed;
    try {
      for (;;) {
        if (body.length > 0) {
          if (errorHead && errorHeadBytes < ERROR_BODY_BYTES_MAX) {
            // A copy: `body` is a view of the connection's read buffer.
            errorHead.push(body.slice(0, ERROR_BODY_BYTES_MAX - errorHeadBytes));
            errorHeadBytes += Math.min(body.length, ERROR_BODY_BYTES_MAX - errorHeadBytes);
          }
          windows.connection = this.host.connectionSendWindow();
          // With credit in hand the bytes leave now, in the same message as the head (and, for a small
          // answer, the end); otherwise as credit comes.
          if (sendNow(this.id, body, windows, send)) this.upstreamBytes += body.length;
          else this.upstreamBytes += await sendWithCredit(this.id, body, windows, send, isClosed, this.#abort.signal);
          if (this.#closed) return;
        }
        if (parser.done) break;
        const read = await conn.read();
        if (this.#closed) return;
        if (read === null) {
          parser.eof();
          break;
        }
        body = parser.feed(read);
      }
    } catch (error) {
      if (!this.#closed) {
        this.host.log.warn("stream.upstream_broken", { requestId: this.head.requestId, error: (error as Error).name });
        this.#reset(ResetCode.UPSTREAM_RESET, "provider stream broke");
      }
      return;
    }
    this.#conn = null;
    if (response.keepAlive && parser.extraBytes === 0 && this.#bodySent) pool.release(conn);
    else conn.close();
    if (errorHead && this.head.model) {
      const text = new TextDecoder().decode(concatBytes(errorHead));
      errorHead = null;
      this.host.providerError?.(this.upstream.provider, this.head.model, text);
    }
    this.#finish();
  }

  /** Reads until the response head is complete; returns the body bytes that came with it (a view of the read buffer). */
  async #readHead(conn: UpstreamConnection, parser: ResponseParser): Promise<Uint8Array> {
    for (;;) {
      const read = await conn.read();
      if (read === null) {
        parser.eof();
        throw new Error("unreachable: eof() throws before a head");
      }
      const body = parser.feed(read);
      if (parser.head) return body;
    }
  }

  #finish(): void {
    if (this.#closed) return;
    this.host.send(encodeEnd(this.id, jsonBytes({ upstreamBytes: this.upstreamBytes, upstreamMs: Date.now() - this.startedAt })));
    this.#close(null, "completed");
  }
}
