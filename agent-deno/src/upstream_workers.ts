/**
 * Provider connections spread over Deno Workers (`--workers N` / AGENT_WORKERS=N, docs/operations/agent.md): with
 * N > 1 the agent runs N − 1 upstream Workers beside its main thread. Each new provider connection is opened in one
 * of them, in turn — the connect, the proxy's CONNECT, the TLS handshake and every TLS record's encryption and
 * decryption, the socket reads and writes — and stays there until it closes. The main thread keeps everything
 * that orders or decides: the tunnel, its windows and credit, cancellation, the request head and the response
 * parser (upstream_http.ts), the keep-alive pool and its retry rule, the endpoint check. It sees a Worker's
 * connection as a `ByteConn`: `read` asks the Worker for at most the caller's buffer of bytes and returns when
 * they came (one read in flight per connection, so a slow client still slows the provider read: the main thread
 * reads only when it has credit), `write` resolves once the Worker's socket accepted the bytes (the retry rule
 * counts them), `close` closes the socket in the Worker (a RESET reaches the provider as it does without Workers).
 *
 * Bytes cross as transferable ArrayBuffers: a read's buffer goes to the Worker and comes back filled, and is used
 * again for the connection's next read; a write's bytes are copied once into a buffer that is transferred.
 *
 * The Worker runs the agent's own entry module (`Deno.mainModule`: src/main.ts, or the release's one bundled
 * file), which serves `serveUpstreamWorker` when it finds itself in a Worker, so it carries no code of its own to
 * ship. A Worker inherits the agent's permissions and no more (Deno's default): the same `--allow-net` list of
 * official hosts and the same proxy variables.
 */
import { ProxyError, processProxy } from "./egress_proxy.ts";
import { originConnector, type ByteConn, type ByteConnect, type Origin } from "./upstream_http.ts";

/** Most threads `--workers` may name (the main thread and up to 15 upstream Workers). */
export const AGENT_WORKERS_MAX = 16;

/** `--workers` / AGENT_WORKERS: a whole number from 1 to AGENT_WORKERS_MAX (1: no Worker, all on the main thread). */
export function parseAgentWorkers(value: string | undefined): number {
  if (value === undefined || value === "") return 1;
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > AGENT_WORKERS_MAX)
    throw new RangeError(`workers must be a whole number from 1 to ${AGENT_WORKERS_MAX}, not ${JSON.stringify(value)}`);
  return n;
}

/** Main thread → Worker. */
type ToWorker =
  | { op: "connect"; id: number; conn: number; origin: Origin }
  | { op: "read"; id: number; conn: number; buf: ArrayBuffer; max: number }
  | { op: "write"; id: number; conn: number; buf: ArrayBuffer; length: number }
  | { op: "close"; conn: number };

/** Worker → main thread: an answer to `id`. */
type FromWorker =
  { id: number; ok: true; n?: number | null; buf?: ArrayBuffer; written?: number } | { id: number; ok: false; name: string; message: string; written?: number };

/** The id of the message a Worker sends once it serves. */
const READY_ID = 0;

/** Whether this code runs in a Worker (the agent's entry module then serves `serveUpstreamWorker`). */
export function inWorker(): boolean {
  const scope = (globalThis as { WorkerGlobalScope?: new () => unknown }).WorkerGlobalScope;
  return scope !== undefined && globalThis instanceof scope;
}

function remoteError(name: string, message: string): Error {
  if (name === "ProxyError") return new ProxyError(message);
  const error = new Error(message);
  error.name = name;
  return error;
}

interface Pending {
  resolve: (m: FromWorker & { ok: true }) => void;
  reject: (e: Error) => void;
}

/** One upstream Worker as the main thread sees it. */
class UpstreamWorker {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #dead: Error | null = null;
  /** Connections open in this Worker. */
  open = 0;

  /** Resolves once the Worker serves (its module loaded); rejects if it stopped first. */
  readonly ready: Promise<void>;

  constructor(moduleUrl: string, onStopped: (error: Error) => void) {
    this.#worker = new Worker(moduleUrl, { type: "module" });
    this.ready = new Promise<void>((resolve, reject) => this.#pending.set(READY_ID, { resolve: () => resolve(), reject }));
    // Whoever starts the Workers waits for this; a Worker that dies later must not be an unhandled rejection here.
    this.ready.catch(() => {});
    this.#worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const p = this.#pending.get(e.data.id);
      if (!p) return;
      this.#pending.delete(e.data.id);
      if (e.data.ok) p.resolve(e.data);
      else {
        const error = remoteError(e.data.name, e.data.message) as Error & { written?: number };
        if (e.data.written !== undefined) error.written = e.data.written;
        p.reject(error);
      }
    };
    this.#worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#dead = new Error(`upstream worker stopped: ${e.message}`);
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
      onStopped(this.#dead);
    };
  }

  call(message: ToWorker & { id: number }, transfer: Transferable[] = []): Promise<FromWorker & { ok: true }> {
    if (this.#dead) return Promise.reject(this.#dead);
    return new Promise((resolve, reject) => {
      this.#pending.set(message.id, { resolve, reject });
      this.#worker.postMessage(message, transfer);
    });
  }

  nextId(): number {
    return this.#nextId++;
  }

  /** Forgets an answer that no longer matters (its connection closed here): it is dropped when it comes. */
  abandon(id: number, error: Error): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    p.reject(error);
  }

  post(message: ToWorker): void {
    if (!this.#dead) this.#worker.postMessage(message);
  }

  terminate(): void {
    this.#dead ??= new Error("upstream workers closed");
    for (const p of this.#pending.values()) p.reject(this.#dead);
    this.#pending.clear();
    this.#worker.terminate();
  }
}

/** A connection held by an upstream Worker: Deno.Conn's byte calls, each one message there and one back. */
class WorkerConn implements ByteConn {
  #spare: ArrayBuffer | null = null;
  #closed = false;
  /** The answers this connection waits for (a read posted while idle, and the request's own). */
  readonly #waiting = new Set<number>();

  constructor(
    private readonly worker: UpstreamWorker,
    private readonly id: number,
  ) {}

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) throw new Deno.errors.BadResource("connection closed");
    const buf = this.#spare !== null && this.#spare.byteLength >= p.length ? this.#spare : new ArrayBuffer(p.length);
    this.#spare = null;
    const id = this.worker.nextId();
    this.#waiting.add(id);
    try {
      const answer = await this.worker.call({ op: "read", id, conn: this.id, buf, max: p.length }, [buf]);
      if (answer.n === null || answer.n === undefined) return null;
      p.set(new Uint8Array(answer.buf!, 0, answer.n));
      this.#spare = answer.buf!;
      return answer.n;
    } finally {
      this.#waiting.delete(id);
    }
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closed) throw new Deno.errors.BadResource("connection closed");
    // One copy, into a buffer of its own that the Worker then owns (the caller's may be a view of a larger one).
    const buf = p.slice().buffer;
    const id = this.worker.nextId();
    this.#waiting.add(id);
    try {
      const answer = await this.worker.call({ op: "write", id, conn: this.id, buf, length: p.length }, [buf]);
      return answer.written!;
    } catch (error) {
      // Part of the bytes went out before the socket failed: say how many (Deno.Conn does), the next write fails.
      const written = (error as { written?: number }).written;
      if (written !== undefined && written > 0) return written;
      throw error;
    } finally {
      this.#waiting.delete(id);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.worker.open--;
    this.worker.post({ op: "close", conn: this.id });
    const error = new Deno.errors.Interrupted("connection closed");
    for (const id of [...this.#waiting]) this.worker.abandon(id, error);
    this.#waiting.clear();
  }
}

/**
 * The agent's upstream Workers (`threads` − 1 of them): `connect` opens each new provider connection in the one
 * holding the fewest (the first of them on a tie).
 */
export class UpstreamWorkers {
  readonly #workers: UpstreamWorker[];
  #nextConn = 1;

  /**
   * `onStopped`: a Worker died (an uncaught error in it): its connections' calls fail, and the agent should stop
   * so that the launcher restarts it whole (main.ts does) rather than keep sending new connections to it.
   */
  constructor(threads: number, moduleUrl: string = Deno.mainModule, onStopped: (error: Error) => void = () => {}) {
    if (threads < 2 || threads > AGENT_WORKERS_MAX) throw new RangeError(`upstream workers need 2 to ${AGENT_WORKERS_MAX} threads`);
    this.#workers = Array.from({ length: threads - 1 }, () => new UpstreamWorker(moduleUrl, onStopped));
  }

  /** Resolves once every Worker serves (the agent starts its tunnel after this); rejects if one could not start. */
  async ready(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.ready));
  }

  /** Connections open in each Worker (tests, the status line). */
  get openPerWorker(): number[] {
    return this.#workers.map((w) => w.open);
  }

  readonly connect: ByteConnect = async (origin) => {
    let worker = this.#workers[0]!;
    for (const w of this.#workers) if (w.open < worker.open) worker = w;
    const conn = this.#nextConn++;
    worker.open++;
    try {
      await worker.call({ op: "connect", id: worker.nextId(), conn, origin });
    } catch (error) {
      worker.open--;
      throw error;
    }
    return new WorkerConn(worker, conn);
  };

  close(): void {
    for (const w of this.#workers) w.terminate();
  }
}

/**
 * The Worker's side: opens connections with the agent's own connect function (this process's proxy settings and
 * trust roots: upstream_http.ts `originConnector`) and moves bytes for the main thread. `connect` is for tests.
 */
export function serveUpstreamWorker(connect: ByteConnect = originConnector({ proxy: processProxy() })): void {
  const conns = new Map<number, ByteConn>();
  /** Connections the main thread closed while their connect was under way. */
  const closedEarly = new Set<number>();
  const scope = globalThis as unknown as {
    onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
    postMessage(message: FromWorker, transfer?: Transferable[]): void;
  };
  const fail = (id: number, error: unknown, written?: number) => {
    const e = error as Error;
    scope.postMessage({ id, ok: false, name: e?.name ?? "Error", message: e?.message ?? String(error), ...(written === undefined ? {} : { written }) });
  };
  scope.onmessage = async (e) => {
    const m = e.data;
    if (m.op === "close") {
      const c = conns.get(m.conn);
      conns.delete(m.conn);
      if (c) {
        try {
          c.close();
        } catch {
          // already closed by the peer
        }
      } else closedEarly.add(m.conn);
      return;
    }
    if (m.op === "connect") {
      try {
        const c = await connect(m.origin);
        if (closedEarly.delete(m.conn)) c.close();
        else conns.set(m.conn, c);
        scope.postMessage({ id: m.id, ok: true });
      } catch (error) {
        fail(m.id, error);
      }
      return;
    }
    const c = conns.get(m.conn);
    if (!c) {
      fail(m.id, new Deno.errors.BadResource("connection closed"));
      return;
    }
    if (m.op === "read") {
      try {
        const n = await c.read(new Uint8Array(m.buf, 0, m.max));
        scope.postMessage({ id: m.id, ok: true, n, buf: m.buf }, [m.buf]);
      } catch (error) {
        fail(m.id, error);
      }
      return;
    }
    const bytes = new Uint8Array(m.buf, 0, m.length);
    let off = 0;
    try {
      while (off < bytes.length) off += await c.write(off === 0 ? bytes : bytes.subarray(off));
      scope.postMessage({ id: m.id, ok: true, written: off });
    } catch (error) {
      fail(m.id, error, off);
    }
  };
  scope.postMessage({ id: READY_ID, ok: true });
}
