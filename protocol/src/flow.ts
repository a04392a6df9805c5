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

/** A stream's receive window grows (doubles) when half of it was taken within this long of the previous grant, ms. */
export const WINDOW_GROWTH_FAST_MS = 50;
/** A stream's receive window grows to this at most (from STREAM_WINDOW_BYTES_DEFAULT: three doublings). */
export const STREAM_WINDOW_GROWN_BYTES_MAX = 2 * 1024 * 1024;
/** What the streams of one connection may grow their receive windows by, together, at most. */
export const WINDOW_GROWTH_BUDGET_BYTES_DEFAULT = 16 * 1024 * 1024;

/**
 * Receive-window growth shared by the streams of one connection (auto-tuning, as HTTP/2 and QUIC implementations
 * do). A stream whose consumer takes half its window within WINDOW_GROWTH_FAST_MS of the previous grant is held
 * back by the round trip, not by its reader: its window doubles (the extra is granted with the increment), up to
 * STREAM_WINDOW_GROWN_BYTES_MAX, drawn from this budget and given back when the stream closes. A slow reader's
 * stream never grows, and what a connection holds stays bounded: `open streams × streamWindowBytes` plus the
 * budget. Nothing on the wire changes: a receiver may always grant more credit than it took back.
 */
export class WindowGrowth {
  #available: number;

  constructor(
    budgetBytes: number = WINDOW_GROWTH_BUDGET_BYTES_DEFAULT,
    readonly now: () => number = () => performance.now(),
    readonly fastMs: number = WINDOW_GROWTH_FAST_MS,
    readonly streamMaxBytes: number = STREAM_WINDOW_GROWN_BYTES_MAX,
  ) {
    this.#available = budgetBytes;
  }

  /** Budget not lent to a stream now. */
  get availableBytes(): number {
    return this.#available;
  }

  /** Lends up to `wantBytes` (may be 0). */
  take(wantBytes: number): number {
    const n = Math.max(0, Math.min(wantBytes, this.#available));
    this.#available -= n;
    return n;
  }

  giveBack(bytes: number): void {
    this.#available += bytes;
  }
}

/**
 * Receiver side. `receive` checks the peer stayed within the window; `consume` returns the increment to
 * grant back (0 until at least half the window is consumed, to batch WINDOW frames). With a `growth`, a fast
 * consumer's window grows (WindowGrowth); `release` gives the growth back when the stream closes.
 */
export class RecvWindow {
  #remaining: number;
  #unacknowledged = 0;
  #sizeBytes: number;
  /** Bytes this window grew by, lent by `growth`. */
  #grown = 0;
  /** When credit was last granted back (or the window made), on `growth`'s clock. */
  #grantedAt = 0;

  constructor(
    sizeBytes: number,
    private readonly growth: WindowGrowth | null = null,
  ) {
    this.#sizeBytes = sizeBytes;
    this.#remaining = sizeBytes;
    if (growth) this.#grantedAt = growth.now();
  }

  get remainingBytes(): number {
    return this.#remaining;
  }

  /** The window granted to the peer now: the one at the start, plus any growth. */
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
    let increment = this.#unacknowledged;
    this.#unacknowledged = 0;
    const growth = this.growth;
    if (growth) {
      const now = growth.now();
      if (now - this.#grantedAt < growth.fastMs && this.#sizeBytes < growth.streamMaxBytes) {
        const extra = growth.take(Math.min(this.#sizeBytes, growth.streamMaxBytes - this.#sizeBytes));
        this.#sizeBytes += extra;
        this.#grown += extra;
        increment += extra;
      }
      this.#grantedAt = now;
    }
    this.#remaining += increment;
    return increment;
  }

  /** The stream closed: its growth goes back to the connection's budget. */
  release(): void {
    if (this.#grown === 0) return;
    this.growth?.giveBack(this.#grown);
    this.#grown = 0;
  }
}
