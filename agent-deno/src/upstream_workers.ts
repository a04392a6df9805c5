/**
 * Provider connections spread over Deno Workers (`--workers N` / AGENT_WORKERS=N, docs/operations/agent.md): with
 * N > 1 the agent runs N − 1 upstream Workers beside its main thread. Each new provider connection is opened in the
 * Worker holding the fewest — the TCP connect, the TLS handshake and every TLS record's encryption and decryption,
 * the socket reads and writes — and stays there until it closes. The main thread keeps everything that orders or
 * decides: the tunnel, its windows and credit, cancellation, the request head and the response parser
 * (upstream_http.ts), the keep-alive pool and its retry rule, the endpoint check, and which sockets a connection
 * needs (`originConnector`: direct or through the https proxy, whose CONNECT exchange it makes over the Worker's
 * socket before it asks the Worker to start TLS inside it). Those sockets come from `UpstreamWorkers.dialer`, and
 * the main thread sees each as a `ByteConn` (dialer.ts): `read` asks the Worker for at most the caller's buffer of
 * bytes and returns when they came (one read in flight per connection, so a slow client still slows the provider
 * read: the main thread reads only when it has credit), `write` resolves once the Worker's socket accepted the
 * bytes (the retry rule counts them), `close` closes the socket in the Worker (a RESET reaches the provider as it
 * does without Workers).
 *
 * Bytes cross as transferable ArrayBuffers: a read's buffer goes to the Worker and comes back filled, and is used
 * again for the connection's next read; a write's bytes are copied once into a buffer that is transferred.
 *
 * The Worker's code is a string run from a blob URL, as the ledger writer's is: Deno checks a Worker's module
 * (and everything it imports) against the agent's `--allow-read`, which names only the data folder, and the
 * installed agent's code (src/) is outside it. The string holds Deno's socket calls and the message loop and
 * nothing that decides; it is the same in the bundled release. A Worker inherits the agent's permissions and no
 * more (Deno's default): the same `--allow-net` list of official hosts and proxy.
 */
import type { ByteConn, Dialer } from "./dialer.ts";

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

/** Main thread → Worker. `conn` names a connection (the main thread numbers them); `id` the answer awaited. */
type ToWorker =
  | { op: "tcp"; id: number; conn: number; hostname: string; port: number }
  | { op: "tls"; id: number; conn: number; hostname: string; port: number; caCerts: string[] | undefined }
  | { op: "startTls"; id: number; conn: number; hostname: string; caCerts: string[] | undefined }
  | { op: "read"; id: number; conn: number; buf: ArrayBuffer; max: number }
  | { op: "write"; id: number; conn: number; buf: ArrayBuffer; length: number }
  | { op: "close"; conn: number };

/** Worker → main thread: an answer to `id`. */
type FromWorker =
  { id: number; ok: true; n?: number | null; buf?: ArrayBuffer; written?: number } | { id: number; ok: false; name: string; message: string; written?: number };

/** The id of the message a Worker sends once it serves. */
const READY_ID = 0;

/**
 * The Worker's side (plain JavaScript: it runs from a blob URL and imports nothing). It holds the sockets by the
 * main thread's numbers and does what each message says: open one (`tcp`, `tls`), start TLS inside one
 * (`startTls`: the proxy's tunnel), read into the buffer it was sent and send it back, write all of a buffer
 * (answering with the bytes the socket accepted, also when it then failed), close. A close that comes while the
 * connection is still opening closes it as soon as it opens. An error answers with its name and message.
 */
export const UPSTREAM_WORKER_SOURCE = `
const conns = new Map();
const opening = new Set();
const closedEarly = new Set();
function fail(id, error, written) {
  const answer = { id, ok: false, name: (error && error.name) || "Error", message: (error && error.message) || String(error) };
  if (written !== undefined) answer.written = written;
  postMessage(answer);
}
function quietClose(c) {
  try {
    c.close();
  } catch {
    // already closed
  }
}
function noDelay(c) {
  if (typeof c.setNoDelay === "function") c.setNoDelay(true);
  return c;
}
async function open(m, make, onFail) {
  opening.add(m.conn);
  let c;
  try {
    c = await make();
  } catch (error) {
    opening.delete(m.conn);
    closedEarly.delete(m.conn);
    if (onFail) onFail();
    fail(m.id, error);
    return;
  }
  opening.delete(m.conn);
  if (closedEarly.delete(m.conn)) quietClose(c);
  else conns.set(m.conn, c);
  postMessage({ id: m.id, ok: true });
}
onmessage = async (e) => {
  const m = e.data;
  if (m.op === "close") {
    const c = conns.get(m.conn);
    conns.delete(m.conn);
    if (c) quietClose(c);
    else if (opening.has(m.conn)) closedEarly.add(m.conn);
    return;
  }
  if (m.op === "tcp") return open(m, async () => noDelay(await Deno.connect({ hostname: m.hostname, port: m.port })));
  if (m.op === "tls")
    return open(m, async () => noDelay(await Deno.connectTls({ hostname: m.hostname, port: m.port, alpnProtocols: ["http/1.1"], caCerts: m.caCerts })));
  const c = conns.get(m.conn);
  if (!c) return fail(m.id, new Deno.errors.BadResource("connection closed"));
  if (m.op === "startTls") {
    conns.delete(m.conn);
    return open(m, () => Deno.startTls(c, { hostname: m.hostname, alpnProtocols: ["http/1.1"], caCerts: m.caCerts }), () => quietClose(c));
  }
  if (m.op === "read") {
    try {
      const n = await c.read(new Uint8Array(m.buf, 0, m.max));
      postMessage({ id: m.id, ok: true, n, buf: m.buf }, [m.buf]);
    } catch (error) {
      fail(m.id, error);
    }
    return;
  }
  const bytes = new Uint8Array(m.buf, 0, m.length);
  let off = 0;
  try {
    while (off < bytes.length) off += await c.write(off === 0 ? bytes : bytes.subarray(off));
    postMessage({ id: m.id, ok: true, written: off });
  } catch (error) {
    fail(m.id, error, off);
  }
};
postMessage({ id: ${READY_ID}, ok: true });
`;

/** The Worker's error as this thread's: a Deno error of the same name is that class (as a socket error on this thread would be). */
function remoteError(name: string, message: string): Error {
  const Known = (Deno.errors as unknown as Record<string, (new (message: string) => Error) | undefined>)[name];
  const error = Known ? new Known(message) : new Error(message);
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
  /** Connections open (or opening) in this Worker. */
  open = 0;

  /** Resolves once the Worker serves; rejects if it stopped first. */
  readonly ready: Promise<void>;

  constructor(url: string, onStopped: (error: Error) => void) {
    this.#worker = new Worker(url, { type: "module" });
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
    readonly worker: UpstreamWorker,
    readonly id: number,
  ) {}

  /** Sends `message` for this connection and waits for its answer (given up when the connection closes here). */
  async ask(message: ToWorker & { id: number }, transfer: Transferable[] = []): Promise<FromWorker & { ok: true }> {
    if (this.#closed) throw new Deno.errors.BadResource("connection closed");
    this.#waiting.add(message.id);
    try {
      return await this.worker.call(message, transfer);
    } finally {
      this.#waiting.delete(message.id);
    }
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) throw new Deno.errors.BadResource("connection closed");
    const buf = this.#spare !== null && this.#spare.byteLength >= p.length ? this.#spare : new ArrayBuffer(p.length);
    this.#spare = null;
    const answer = await this.ask({ op: "read", id: this.worker.nextId(), conn: this.id, buf, max: p.length }, [buf]);
    if (answer.n === null || answer.n === undefined) return null;
    p.set(new Uint8Array(answer.buf!, 0, answer.n));
    this.#spare = answer.buf!;
    return answer.n;
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closed) throw new Deno.errors.BadResource("connection closed");
    // One copy, into a buffer of its own that the Worker then owns (the caller's may be a view of a larger one).
    const buf = p.slice().buffer;
    try {
      const answer = await this.ask({ op: "write", id: this.worker.nextId(), conn: this.id, buf, length: p.length }, [buf]);
      return answer.written!;
    } catch (error) {
      // Part of the bytes went out before the socket failed: say how many (Deno.Conn does), the next write fails.
      const written = (error as { written?: number }).written;
      if (written !== undefined && written > 0) return written;
      throw error;
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
 * The agent's upstream Workers (`threads` − 1 of them) and `dialer`, which opens each new connection in the one
 * holding the fewest (the first of them on a tie); TLS inside a proxy's tunnel starts in the tunnel's Worker.
 */
export class UpstreamWorkers {
  readonly #workers: UpstreamWorker[];
  readonly #url: string;
  #nextConn = 1;

  /**
   * `onStopped`: a Worker died (an uncaught error in it): its connections' calls fail, and the agent should stop
   * so that the launcher restarts it whole (main.ts does) rather than keep sending new connections to it.
   * `source`: the Workers' code (tests give one that fails).
   */
  constructor(threads: number, onStopped: (error: Error) => void = () => {}, source: string = UPSTREAM_WORKER_SOURCE) {
    if (threads < 2 || threads > AGENT_WORKERS_MAX) throw new RangeError(`upstream workers need 2 to ${AGENT_WORKERS_MAX} threads`);
    this.#url = URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
    this.#workers = Array.from({ length: threads - 1 }, () => new UpstreamWorker(this.#url, onStopped));
  }

  /** Resolves once every Worker serves (the agent starts its tunnel after this); rejects if one could not start. */
  async ready(): Promise<void> {
    try {
      await Promise.all(this.#workers.map((w) => w.ready));
    } finally {
      URL.revokeObjectURL(this.#url);
    }
  }

  /** Connections open in each Worker (tests, the status line). */
  get openPerWorker(): number[] {
    return this.#workers.map((w) => w.open);
  }

  async #open(message: (id: number, conn: number) => ToWorker & { id: number }): Promise<ByteConn> {
    let worker = this.#workers[0]!;
    for (const w of this.#workers) if (w.open < worker.open) worker = w;
    const conn = new WorkerConn(worker, this.#nextConn++);
    worker.open++;
    try {
      await conn.ask(message(worker.nextId(), conn.id));
    } catch (error) {
      conn.close();
      throw error;
    }
    return conn;
  }

  readonly dialer: Dialer = {
    tcp: (hostname, port) => this.#open((id, conn) => ({ op: "tcp", id, conn, hostname, port })),
    tls: (hostname, port, caCerts) => this.#open((id, conn) => ({ op: "tls", id, conn, hostname, port, caCerts })),
    startTls: async (tunnel, hostname, caCerts) => {
      if (!(tunnel instanceof WorkerConn)) throw new TypeError("startTls needs a connection this dialer opened");
      // The Worker starts TLS on the tunnel's socket in place: the same connection, now encrypted.
      await tunnel.ask({ op: "startTls", id: tunnel.worker.nextId(), conn: tunnel.id, hostname, caCerts });
      return tunnel;
    },
  };

  close(): void {
    for (const w of this.#workers) w.terminate();
  }
}
