/**
 * One proxied call at the agent: the request body arrives as DATA frames and feeds a ReadableStream that
 * fetch() pulls (credit goes back to the hub only as fetch takes the bytes); the response body is read
 * only as fast as the hub grants credit, so a slow user slows the provider read, not the agent's memory.
 * A RESET from the hub aborts the fetch, which closes the provider connection.
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
  MultipartBodyScanner,
  multipartBoundary,
  RecvWindow,
  ResetCode,
  RESPONSE_HEADERS_DROPPED,
  SendWindow,
  sendWithCredit,
  type RequestHead,
} from "../../protocol/src/mod.ts";
import { authHeaders, type Upstream } from "./providers.ts";
import { ERROR_BODY_BYTES_MAX } from "./context_windows.ts";
import type { Log } from "./log.ts";

export interface StreamHost {
  send(frame: Uint8Array): void;
  connectionSendWindow(): SendWindow;
  forget(id: number): void;
  /** The stream is over: how it ended. */
  ended?(stream: AgentStream, outcome: StreamOutcome): void;
  /**
   * Before the provider call: may it go to the provider's endpoint (endpoint_check.ts)? Null when it may, or the
   * RESET to refuse it with. Absent: no check (a development upstream without `--dev-resolve`).
   */
  checkEndpoint?(): Promise<{ code: ResetCode; reason: string } | null>;
  /** The provider answered 400: the first ERROR_BODY_BYTES_MAX bytes of its body (read as they pass, not kept). */
  providerError?(provider: string, model: string, body: string): void;
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
  #bodyWaiter: (() => void) | null = null;
  #closed = false;
  readonly startedAt = Date.now();
  upstreamBytes = 0;
  /** The provider's HTTP status, once its response head arrived. */
  status: number | null = null;
  /**
   * Reads the body the way the provider will, so a body that names another model than the head the agent was
   * asked to serve (or repeats a routing field) never reaches the provider whole.
   */
  readonly #scanner: BodyScanner;

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
    this.recvWindow = new RecvWindow(ownStreamWindowBytes);
    const contentType = head.headers.find(([n]) => n === "content-type")?.[1] ?? "";
    const boundary = contentType.toLowerCase().startsWith("multipart/form-data") ? multipartBoundary(contentType) : null;
    this.#scanner = boundary ? new MultipartBodyScanner(boundary) : new JsonBodyScanner();
  }

  /**
   * Checks `chunk` (or, with `end`, the whole body) before it goes on: true when the body may continue; false
   * after refusing the stream with BODY_REFUSED.
   */
  #bodyAllowed(chunk: Uint8Array | null, end: boolean): boolean {
    const scanner = this.#scanner;
    if (chunk) scanner.push(chunk);
    if (end) scanner.end();
    const model = scanner.fields.model;
    const problem =
      scanner.problem ??
      (model !== null && model !== this.head.model
        ? "the body names another model than the request head"
        : end && model === null
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

  onData(chunk: Uint8Array): boolean {
    if (this.#bodyEnded) return false;
    if (!this.recvWindow.receive(chunk.length)) return false;
    // The frame buffer belongs to the socket layer: keep a copy only as long as fetch has not taken it.
    this.#bodyQueue.push(chunk.slice());
    this.#bodyWaiter?.();
    return true;
  }

  onEnd(): void {
    this.#bodyEnded = true;
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
    if (reason !== null) this.#abort.abort(reason);
    this.sendWindow.close();
    this.#bodyWaiter?.();
    this.host.forget(this.id);
    this.host.ended?.(this, outcome);
  }

  #reset(code: number, reason: string): void {
    if (this.#closed) return;
    this.host.send(encodeReset(this.id, code, reason));
    this.#close(new DOMException(reason, "AbortError"), "reset");
  }

  #requestBody(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          while (this.#bodyQueue.length === 0 && !this.#bodyEnded && !this.#closed) {
            await new Promise<void>((resolve) => (this.#bodyWaiter = resolve));
            this.#bodyWaiter = null;
          }
          if (this.#closed) {
            controller.error(new DOMException("stream closed", "AbortError"));
            return;
          }
          const chunk = this.#bodyQueue.shift();
          if (!this.#bodyAllowed(chunk ?? null, !chunk)) {
            controller.error(new DOMException("request body refused", "AbortError"));
            return;
          }
          if (chunk) {
            controller.enqueue(chunk);
            const inc = this.recvWindow.consume(chunk.length);
            if (inc > 0) this.host.send(encodeWindow(this.id, inc));
            return;
          }
          controller.close();
        },
      },
      { highWaterMark: 0 },
    );
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
    const headers = new Headers();
    for (const [name, value] of this.head.headers) headers.append(name, value);
    for (const [name, value] of authHeaders(this.upstream)) headers.set(name, value);
    if (this.upstream.provider === "anthropic" && !headers.has("anthropic-version")) headers.set("anthropic-version", "2023-06-01");
    // Bytes must reach the user as the provider sent them: ask for no compression.
    headers.set("accept-encoding", "identity");
    if (this.head.bodyBytes !== null) headers.set("content-length", String(this.head.bodyBytes));
    const small = this.head.method === "POST" ? await this.#smallBody() : null;
    if (this.#closed) return;
    const headTimer = setTimeout(() => this.#reset(ResetCode.UPSTREAM_TIMEOUT, "provider did not answer in time"), UPSTREAM_HEAD_TIMEOUT_MS);
    let response: Response;
    try {
      response = await fetch(this.url, {
        method: this.head.method,
        headers,
        body: this.head.method !== "POST" ? undefined : ((small as Uint8Array<ArrayBuffer> | null) ?? this.#requestBody()),
        signal: this.#abort.signal,
        redirect: "manual",
        // @ts-ignore: `duplex` is required for streaming request bodies (not yet in every lib.dom).
        duplex: "half",
      });
    } catch (error) {
      clearTimeout(headTimer);
      if (!this.#closed) {
        this.host.log.warn("stream.upstream_unreachable", { requestId: this.head.requestId, provider: this.upstream.provider, error: (error as Error).name });
        this.#reset(ResetCode.UPSTREAM_UNREACHABLE, "provider unreachable");
      }
      return;
    } finally {
      clearTimeout(headTimer);
    }
    if (this.#closed) {
      await response.body?.cancel().catch(() => {});
      return;
    }
    const outHeaders: [string, string][] = [];
    response.headers.forEach((value, name) => {
      if (!RESPONSE_HEADERS_DROPPED.has(name)) outHeaders.push([name, value]);
    });
    this.status = response.status;
    this.host.send(encodeResponse(this.id, jsonBytes({ status: response.status, headers: outHeaders })));
    if (!response.body) {
      this.#finish();
      return;
    }
    const reader = response.body.getReader();
    // A 400's first bytes, for a context-length error (the agent learns the model's window from it).
    let errorHead: Uint8Array[] | null = response.status === 400 && this.host.providerError ? [] : null;
    let errorHeadBytes = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (errorHead && errorHeadBytes < ERROR_BODY_BYTES_MAX) {
          errorHead.push(value.subarray(0, ERROR_BODY_BYTES_MAX - errorHeadBytes));
          errorHeadBytes += Math.min(value.length, ERROR_BODY_BYTES_MAX - errorHeadBytes);
        }
        const windows = { stream: this.sendWindow, connection: this.host.connectionSendWindow() };
        this.upstreamBytes += await sendWithCredit(
          this.id,
          value,
          windows,
          (f) => this.host.send(f),
          () => this.#closed,
          this.#abort.signal,
        );
        if (this.#closed) return;
      }
    } catch (error) {
      if (!this.#closed) {
        this.host.log.warn("stream.upstream_broken", { requestId: this.head.requestId, error: (error as Error).name });
        this.#reset(ResetCode.UPSTREAM_RESET, "provider stream broke");
      }
      await reader.cancel().catch(() => {});
      return;
    }
    if (errorHead && this.head.model) {
      const text = new TextDecoder().decode(concatBytes(errorHead));
      errorHead = null;
      this.host.providerError?.(this.upstream.provider, this.head.model, text);
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#closed) return;
    this.host.send(encodeEnd(this.id, jsonBytes({ upstreamBytes: this.upstreamBytes, upstreamMs: Date.now() - this.startedAt })));
    this.#close(null, "completed");
  }
}
