/**
 * Credit-based flow control, per stream and per connection (the HTTP/2 model).
 *
 * The sender holds a SendWindow per stream plus one for the connection and may only send DATA while
 * both have credit. The receiver holds a RecvWindow per stream plus one for the connection; it grants
 * credit back (WINDOW frames) only as its consumer actually takes the bytes, so a slow reader stops the
 * sender after at most one window, and memory is bounded by windows, not by body size.
 */
import { DATA_PAYLOAD_BYTES_MAX, WINDOW_BYTES_MAX } from "./constants.ts";
import { encodeData } from "./frame.ts";

/** Why a wait was aborted: the signal's reason when it is an Error, else an AbortError naming it. */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException(typeof reason === "string" ? reason : "aborted", "AbortError");
}

export class WindowClosedError extends Error {
  constructor(message = "window closed") {
    super(message);
    this.name = "WindowClosedError";
  }
}

/** The one reason every closed window gives (an Error captures a stack trace: too costly to make per stream). */
const WINDOW_CLOSED = new WindowClosedError();

export class SendWindow {
  #available: number;
  #waiters = new Set<() => void>();
  #closed: Error | null = null;

  constructor(initialBytes: number) {
    this.#available = initialBytes;
  }

  get availableBytes(): number {
    return this.#available;
  }

  /** Takes up to `wantBytes` of credit that is available now (may be 0). */
  take(wantBytes: number): number {
    const n = Math.min(wantBytes, this.#available);
    this.#available -= n;
    return n;
  }

  /** Returns unused credit taken with `take`. */
  giveBack(bytes: number): void {
    this.#available += bytes;
    if (bytes > 0) this.#wake();
  }

  /** Adds credit from a WINDOW frame. Returns false when the window would overflow (a peer error). */
  grant(incrementBytes: number): boolean {
    if (this.#available + incrementBytes > WINDOW_BYTES_MAX) return false;
    this.#available += incrementBytes;
    this.#wake();
    return true;
  }

  /** Resolves when credit is available; rejects when the window closes or the signal aborts. */
  whenAvailable(signal?: AbortSignal): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (this.#available > 0) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#waiters.delete(waiter);
        reject(abortReason(signal!));
      };
      const waiter = () => {
        signal?.removeEventListener("abort", onAbort);
        if (this.#closed) reject(this.#closed);
        else resolve();
      };
      this.#waiters.add(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  close(reason: Error = WINDOW_CLOSED): void {
    if (this.#closed) return;
    this.#closed = reason;
    this.#wake();
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }
}

/**
 * Waits for credit on both the stream and the connection window and takes up to `wantBytes`.
 * The caller must send exactly the returned number of bytes.
 */
export async function acquireCredit(stream: SendWindow, connection: SendWindow, wantBytes: number, signal?: AbortSignal): Promise<number> {
  for (;;) {
    if (signal?.aborted) throw signal.reason;
    if (stream.availableBytes === 0) {
      await stream.whenAvailable(signal);
      continue;
    }
    if (connection.availableBytes === 0) {
      await connection.whenAvailable(signal);
      continue;
    }
    const fromStream = stream.take(wantBytes);
    const n = connection.take(fromStream);
    stream.giveBack(fromStream - n);
    return n;
  }
}

/**
 * Sends all of `bytes` now, as DATA frames of at most DATA_PAYLOAD_BYTES_MAX, when both windows have credit for
 * all of it; otherwise sends nothing. True when sent. Unlike `sendWithCredit` nothing waits, so the frames leave
 * in the same batch (batch.ts) as the frames sent before and after them in this turn — a small call's head, body
 * and end as one message.
 */
export function sendNow(
  streamId: number,
  bytes: Uint8Array,
  windows: { stream: SendWindow; connection: SendWindow },
  send: (frame: Uint8Array) => void,
): boolean {
  const n = bytes.length;
  if (windows.stream.availableBytes < n || windows.connection.availableBytes < n) return false;
  windows.stream.take(n);
  windows.connection.take(n);
  for (let offset = 0; offset < n; offset += DATA_PAYLOAD_BYTES_MAX)
    send(encodeData(streamId, bytes.subarray(offset, Math.min(n, offset + DATA_PAYLOAD_BYTES_MAX))));
  return true;
}

/**
 * Sends `bytes` on a stream as DATA frames of at most DATA_PAYLOAD_BYTES_MAX, each only once both windows
 * have credit for it. Stops early (returning what was sent) when `isClosed()` turns true while waiting.
 */
export async function sendWithCredit(
  streamId: number,
  bytes: Uint8Array,
  windows: { stream: SendWindow; connection: SendWindow },
  send: (frame: Uint8Array) => void,
  isClosed: () => boolean,
  signal?: AbortSignal,
): Promise<number> {
  let offset = 0;
  while (offset < bytes.length) {
    const want = Math.min(bytes.length - offset, DATA_PAYLOAD_BYTES_MAX);
    const n = await acquireCredit(windows.stream, windows.connection, want, signal);
    if (isClosed()) return offset;
    send(encodeData(streamId, bytes.subarray(offset, offset + n)));
    offset += n;
  }
  return offset;
}

/**
 * Receiver side. `receive` checks the peer stayed within the window; `consume` returns the increment to
 * grant back (0 until at least half the window is consumed, to batch WINDOW frames).
 */
export class RecvWindow {
  #remaining: number;
  #unacknowledged = 0;
  readonly #sizeBytes: number;

  constructor(sizeBytes: number) {
    this.#sizeBytes = sizeBytes;
    this.#remaining = sizeBytes;
  }

  get remainingBytes(): number {
    return this.#remaining;
  }

  /** The window granted to the peer at the start. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Bytes received and not yet granted back: what the receiver is holding for this window. */
  get outstandingBytes(): number {
    return this.#sizeBytes - this.#remaining;
  }

  /** Returns false when the peer sent more than it was granted. */
  receive(bytes: number): boolean {
    if (bytes > this.#remaining) return false;
    this.#remaining -= bytes;
    return true;
  }

  consume(bytes: number): number {
    this.#unacknowledged += bytes;
    if (this.#unacknowledged * 2 < this.#sizeBytes) return 0;
    const increment = this.#unacknowledged;
    this.#unacknowledged = 0;
    this.#remaining += increment;
    return increment;
  }
}
