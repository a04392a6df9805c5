/**
 * Reads a request body chunk by chunk for the request path: what the socket delivered already is returned without
 * waiting, and only a read that must wait arms the body's idle limit. Node's own async iterator over a request
 * costs an async generator step per chunk, and the request path raced each step against a timer of its own (a
 * promise, a timer and a race per chunk, for every small request whose whole body came with its head).
 */
import type { IncomingMessage } from "node:http";

/** The client's connection closed before the body was complete. */
export class BodyAbortedError extends Error {
  constructor() {
    super("the request body was cut off: the client closed the connection");
    this.name = "BodyAbortedError";
  }
}

export class BodyReader {
  #done = false;

  /**
   * `stalled` makes the error a read fails with when no byte arrives within `idleMs` (the stream is left as it is:
   * the caller answers and closes it).
   */
  constructor(
    private readonly req: IncomingMessage,
    private readonly idleMs: number,
    private readonly stalled: () => Error,
  ) {}

  /** The next chunk (whatever is buffered, concatenated), or done once the whole body was read. */
  next(): Promise<IteratorResult<Buffer>> {
    const now = this.#readNow();
    return now ?? this.#wait();
  }

  /** A chunk or the end, when known without waiting; null when the next bytes have not arrived. */
  #readNow(): Promise<IteratorResult<Buffer>> | null {
    if (this.#done) return DONE;
    const req = this.req;
    if (req.errored) return Promise.reject(req.errored);
    const chunk = req.read() as Buffer | null;
    if (chunk !== null) return Promise.resolve({ done: false, value: chunk });
    // `complete`: the whole message was parsed, so nothing buffered and nothing more means the body's end.
    if (req.complete && req.readableLength === 0) {
      this.#done = true;
      return DONE;
    }
    if (req.destroyed) return Promise.reject(new BodyAbortedError());
    return null;
  }

  #wait(): Promise<IteratorResult<Buffer>> {
    const req = this.req;
    return new Promise<IteratorResult<Buffer>>((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        req.off("readable", onReadable);
        req.off("end", onReadable);
        req.off("error", onError);
        req.off("close", onReadable);
      };
      const onReadable = () => {
        const now = this.#readNow();
        if (now === null) return; // woken without bytes (a 'readable' for an empty read): wait on
        settle();
        resolve(now);
      };
      const onError = (error: Error) => {
        settle();
        reject(error);
      };
      const timer = setTimeout(() => {
        settle();
        reject(this.stalled());
      }, this.idleMs);
      req.on("readable", onReadable);
      req.on("end", onReadable);
      req.on("error", onError);
      req.on("close", onReadable);
    });
  }
}

const DONE: Promise<IteratorResult<Buffer>> = Promise.resolve({ done: true, value: undefined });
