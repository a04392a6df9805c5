/**
 * The agent's HTTP/1.1 client to the provider: a byte pump on Deno's own TCP and TLS connections, in place of
 * `fetch` (which cost 0.7–1.4 ms per call inside a busy agent; docs/performance.md). A keep-alive pool per
 * upstream origin; the request head is written once (with a small body in the same write); only the response
 * head and the chunked framing are parsed, and body bytes go on as they were read — the chunk framing is cut
 * out of the read buffer in place, so one socket read becomes one DATA frame. Nothing here follows a redirect,
 * decompresses, or picks a host: the caller passes the URL (an official origin, or the loopback development
 * origin) and gets the provider's answer as it is.
 *
 * Every new connection goes through one function, the pool's `connect(origin)`: `connectOrigin` honours
 * HTTPS_PROXY / NO_PROXY (egress_proxy.ts) as `fetch` did.
 */
import { bypassesProxy, openProxyTunnel, processProxy, type ProxySettings } from "./egress_proxy.ts";

/** Longest response head (status line and headers) read, bytes; a longer one is a malformed answer. */
export const RESPONSE_HEAD_BYTES_MAX = 64 * 1024;
/** Longest chunk-size line (size and extensions), bytes. */
export const CHUNK_LINE_BYTES_MAX = 4096;
/** Longest trailer section after the last chunk, bytes (trailers are read and dropped). */
export const TRAILER_BYTES_MAX = 16 * 1024;
/** Interim (1xx) responses skipped before the final one, at most. */
export const INTERIM_RESPONSES_MAX = 16;
/** Bytes asked of the socket per read, at most and at first: one read's worth goes into one DATA frame. */
export const READ_BUFFER_BYTES = 64 * 1024;
export const READ_BUFFER_BYTES_MIN = 16 * 1024;
/** Idle keep-alive connections kept per origin, at most. */
export const IDLE_CONNECTIONS_PER_ORIGIN_MAX = 256;
/**
 * How long an idle keep-alive connection is kept, ms — below the 5 s a Node server keeps one by default, so the
 * agent closes first instead of racing the server's close.
 */
export const IDLE_CONNECTION_MS = 4_000;
/** Longest wait for a TCP (and TLS) connection to the provider, ms. */
export const CONNECT_TIMEOUT_MS = 10_000;

export class UpstreamProtocolError extends Error {
  constructor(message: string) {
    super(`provider answer is not valid HTTP/1.1: ${message}`);
    this.name = "UpstreamProtocolError";
  }
}

/** Where a connection goes: scheme, host and port of the URL. `key` names the pool it belongs to. */
export interface Origin {
  readonly secure: boolean;
  readonly hostname: string;
  readonly port: number;
  /** `Host` header value. */
  readonly host: string;
  readonly key: string;
}

/** Splits an http(s) URL into its origin and request target (path and query). */
export function splitUrl(url: string): { origin: Origin; target: string } {
  const u = new URL(url);
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new TypeError(`not an http(s) URL: ${u.protocol}`);
  const secure = u.protocol === "https:";
  const hostname = u.hostname.replace(/^\[|\]$/g, "");
  const port = u.port ? Number(u.port) : secure ? 443 : 80;
  return { origin: { secure, hostname, port, host: u.host, key: `${u.protocol}//${u.host}` }, target: u.pathname + u.search };
}

/** Opens a connection to `origin`, TLS for https, Nagle off. */
export type Connect = (origin: Origin) => Promise<Deno.Conn>;

export interface ConnectOptions {
  /** The https proxy (egress_proxy.ts), or null: every origin direct. */
  proxy: ProxySettings | null;
  /** Trust roots for TLS in place of the system's (the egress probe: the hub's own certificate; tests). */
  caCerts?: string[];
}

/**
 * The connect function for `options`: an https origin goes through the proxy unless NO_PROXY exempts it —
 * `CONNECT host:port` by name, then TLS inside the tunnel with the origin's name, so the certificate is checked
 * against it as on a direct connection. Plain http (the loopback development origin) always goes direct.
 */
export function originConnector(options: ConnectOptions): Connect {
  const { proxy, caCerts } = options;
  return async (origin) => {
    let conn: Deno.Conn;
    if (!origin.secure) conn = await Deno.connect({ hostname: origin.hostname, port: origin.port });
    else if (proxy && !bypassesProxy(proxy.noProxy, origin.hostname, origin.port)) {
      const tunnel = await openProxyTunnel(proxy, origin.hostname, origin.port);
      try {
        return await Deno.startTls(tunnel, { hostname: origin.hostname, alpnProtocols: ["http/1.1"], caCerts });
      } catch (error) {
        tunnel.close();
        throw error;
      }
    } else conn = await Deno.connectTls({ hostname: origin.hostname, port: origin.port, alpnProtocols: ["http/1.1"], caCerts });
    (conn as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    return conn;
  };
}

/** The agent's connect function: this process's proxy settings (HTTPS_PROXY, NO_PROXY), the system's trust roots. */
export const connectOrigin: Connect = (origin) => originConnector({ proxy: processProxy() })(origin);

/** One connection to a provider; the pool lends it to one request at a time. */
export class UpstreamConnection {
  /**
   * The read buffer: a body chunk the client hands out is a view of it, good until the next read. It starts at
   * READ_BUFFER_BYTES_MIN and doubles (to READ_BUFFER_BYTES) after each read that filled it: a thousand idle
   * SSE streams hold 16 KiB each, a bulk download reads 64 KiB at a time.
   */
  #buffer = new Uint8Array(READ_BUFFER_BYTES_MIN);
  /** Requests served on this connection before the current one. */
  served = 0;
  /**
   * Bytes the socket accepted so far (all requests). A request that failed while this still equals its value
   * when the request began provably never reached the provider (the retry rule in stream.ts).
   */
  bytesWritten = 0;
  idleSince = 0;
  #idleRead: Promise<number | null> | null = null;
  #closed = false;

  constructor(
    readonly origin: Origin,
    readonly conn: Deno.Conn,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  /** The next bytes from the provider (a view of `buffer`), or null at end of stream. */
  async read(): Promise<Uint8Array | null> {
    const pending = this.#idleRead;
    this.#idleRead = null;
    const buffer = this.#buffer;
    const n = await (pending ?? this.conn.read(buffer));
    if (n === null) return null;
    if (n === buffer.length && buffer.length < READ_BUFFER_BYTES) this.#buffer = new Uint8Array(buffer.length * 2);
    return buffer.subarray(0, n);
  }

  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      const n = await this.conn.write(off === 0 ? bytes : bytes.subarray(off));
      off += n;
      this.bytesWritten += n;
    }
  }

  /**
   * While idle a read stays posted: a provider that closes an idle connection (or sends anything unasked) is
   * seen at once, and the connection leaves the pool. The next request's first read takes this one over.
   */
  watchIdle(onDead: () => void): void {
    const read = this.conn.read(this.#buffer);
    this.#idleRead = read;
    read.then(
      () => {
        if (this.#idleRead === read) onDead();
      },
      () => {
        if (this.#idleRead === read) onDead();
      },
    );
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed by the peer
    }
  }
}

/** Keep-alive connections per origin; new ones through `connect`. */
export class UpstreamPool {
  readonly #idle = new Map<string, UpstreamConnection[]>();
  #sweep: ReturnType<typeof setInterval> | null = null;
  /** Connections opened so far (for tests and the status line). */
  opened = 0;

  constructor(
    readonly connect: Connect = connectOrigin,
    readonly limits = { idlePerOriginMax: IDLE_CONNECTIONS_PER_ORIGIN_MAX, idleMs: IDLE_CONNECTION_MS, connectTimeoutMs: CONNECT_TIMEOUT_MS },
    readonly now: () => number = Date.now,
  ) {}

  /** An idle connection to `origin` (most recently used first), or a new one (`fresh`: never a reused one). */
  async acquire(origin: Origin, fresh = false): Promise<UpstreamConnection> {
    if (!fresh) {
      const idle = this.#idle.get(origin.key);
      const c = idle?.pop();
      if (c) return c;
    }
    return new UpstreamConnection(origin, await this.#connect(origin));
  }

  #connect(origin: Origin): Promise<Deno.Conn> {
    return new Promise((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        reject(new Error(`no connection to ${origin.host} within ${this.limits.connectTimeoutMs} ms`));
      }, this.limits.connectTimeoutMs);
      this.connect(origin).then(
        (conn) => {
          clearTimeout(timer);
          if (timedOut) conn.close();
          else {
            this.opened++;
            resolve(conn);
          }
        },
        (error) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  /** A request completed and left the connection clean: keep it for the next request to that origin. */
  release(c: UpstreamConnection): void {
    if (c.closed) return;
    const list = this.#idle.get(c.origin.key) ?? [];
    if (list.length >= this.limits.idlePerOriginMax) {
      c.close();
      return;
    }
    c.served++;
    c.idleSince = this.now();
    list.push(c);
    this.#idle.set(c.origin.key, list);
    c.watchIdle(() => this.#drop(c));
    if (this.#sweep === null) {
      this.#sweep = setInterval(() => this.#evict(), Math.max(250, this.limits.idleMs / 4));
      Deno.unrefTimer(this.#sweep as unknown as number);
    }
  }

  #drop(c: UpstreamConnection): void {
    const list = this.#idle.get(c.origin.key);
    const i = list?.indexOf(c) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    c.close();
  }

  #evict(): void {
    const cutoff = this.now() - this.limits.idleMs;
    let left = 0;
    for (const [key, list] of this.#idle) {
      // Oldest first: the list is in release order.
      while (list.length > 0 && list[0]!.idleSince <= cutoff) list.shift()!.close();
      if (list.length === 0) this.#idle.delete(key);
      left += list.length;
    }
    if (left === 0 && this.#sweep !== null) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
  }

  idleCount(origin?: Origin): number {
    if (origin) return this.#idle.get(origin.key)?.length ?? 0;
    let n = 0;
    for (const l of this.#idle.values()) n += l.length;
    return n;
  }

  /** Closes every idle connection (agent shutdown, tests). */
  close(): void {
    for (const list of this.#idle.values()) for (const c of list) c.close();
    this.#idle.clear();
    if (this.#sweep !== null) clearInterval(this.#sweep);
    this.#sweep = null;
  }
}

/** The agent process's pool (a test may give a stream its own). */
export const SHARED_POOL: UpstreamPool = new UpstreamPool();

// --- request head ---

/**
 * Request headers the agent never takes from the hub: framing and connection headers (the agent writes its
 * own), credentials (the agent adds the owner's), and the encoding (the agent asks for none).
 */
export const REQUEST_HEADERS_SET_BY_AGENT: ReadonlySet<string> = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "upgrade",
  "te",
  "trailer",
  "expect",
  "accept-encoding",
  "authorization",
  "proxy-authorization",
  "api-key",
  "x-api-key",
  "cookie",
]);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * The request head as bytes. `headers` are the hub's (those the agent sets itself are skipped), then `own`
 * (credentials and the agent's choices); a body of known length gets Content-Length, one of unknown length
 * (null) is sent chunked. Throws TypeError for a header that cannot be written as it is (a CR or LF in a value).
 */
export function requestHead(
  method: string,
  origin: Origin,
  target: string,
  headers: readonly (readonly [string, string])[],
  own: readonly (readonly [string, string])[],
  bodyBytes: number | null,
): string {
  let head = `${method} ${target} HTTP/1.1\r\nhost: ${origin.host}\r\n`;
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (REQUEST_HEADERS_SET_BY_AGENT.has(lower)) continue;
    if (own.some(([n]) => n === lower)) continue;
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) throw new TypeError(`request header ${name.slice(0, 64)} cannot be forwarded`);
    head += `${lower}: ${value}\r\n`;
  }
  for (const [name, value] of own) {
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) throw new TypeError(`request header ${name.slice(0, 64)} cannot be forwarded`);
    head += `${name}: ${value}\r\n`;
  }
  head += bodyBytes === null ? "transfer-encoding: chunked\r\n\r\n" : `content-length: ${bodyBytes}\r\n\r\n`;
  return head;
}

const encoder = new TextEncoder();

/** The head and (when given) a whole body as one buffer: one write, one TCP segment for a small call. */
export function headWithBody(head: string, body: Uint8Array | null): Uint8Array {
  const out = new Uint8Array(head.length * 3 + (body?.length ?? 0));
  const { written } = encoder.encodeInto(head, out);
  if (body) out.set(body, written);
  return out.subarray(0, written + (body?.length ?? 0));
}

/** One piece of a chunked request body: size line, the bytes, CRLF, as one buffer. */
export function chunkFrame(bytes: Uint8Array): Uint8Array {
  const size = bytes.length.toString(16);
  const out = new Uint8Array(size.length + 4 + bytes.length);
  for (let i = 0; i < size.length; i++) out[i] = size.charCodeAt(i);
  out[size.length] = 13;
  out[size.length + 1] = 10;
  out.set(bytes, size.length + 2);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return out;
}

export const LAST_CHUNK: Uint8Array = encoder.encode("0\r\n\r\n");

// --- response parser ---

export interface ResponseHead {
  status: number;
  /** Lower-case names, in the order received. */
  headers: [string, string][];
  /** HTTP/1.1 without `Connection: close`: the connection may serve another request after this one. */
  keepAlive: boolean;
}

const enum State {
  Head,
  Length,
  ChunkSize,
  ChunkExt,
  ChunkSizeLf,
  ChunkData,
  ChunkDataCr,
  ChunkDataLf,
  TrailerStart,
  TrailerLine,
  TrailerLf,
  TrailerEndLf,
  UntilClose,
  Done,
}

const latin1 = new TextDecoder("latin1");

/**
 * Incremental HTTP/1.1 response parser. `feed` takes what a socket read returned, parses it in place and
 * returns the body bytes it carried, moved to the start of the same buffer (a view of it): content-length,
 * chunked (framing and trailers dropped) and close-delimited bodies; interim 1xx heads are skipped. Throws
 * UpstreamProtocolError for a malformed answer.
 */
export class ResponseParser {
  head: ResponseHead | null = null;
  #state = State.Head;
  /** Head bytes from earlier reads (copied), while the head is incomplete. */
  #held: Uint8Array | null = null;
  #interim = 0;
  #remaining = 0;
  #lineBytes = 0;
  #sizeDigits = 0;
  #trailerBytes = 0;
  /** Bytes the provider sent after the end of the response (none is expected: the connection is then not reused). */
  extraBytes = 0;

  constructor(readonly method: string) {}

  /** The whole response has been read. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /** The body runs until the provider closes the connection. */
  get closeDelimited(): boolean {
    return this.#state === State.UntilClose;
  }

  feed(input: Uint8Array): Uint8Array {
    let i = 0;
    let w = 0;
    const n = input.length;
    while (i < n) {
      switch (this.#state) {
        case State.Head: {
          // A head split over reads is joined (a copy; rare): the terminator may straddle the reads.
          const held = this.#held;
          const buf = held ? concat(held, input.subarray(i)) : input;
          const from = held ? 0 : i;
          const end = headEnd(buf, from);
          if (end < 0) {
            if (buf.length - from > RESPONSE_HEAD_BYTES_MAX) throw new UpstreamProtocolError(`response head over ${RESPONSE_HEAD_BYTES_MAX} bytes`);
            this.#held = held ? buf : input.slice(i);
            i = n;
            break;
          }
          if (end - from > RESPONSE_HEAD_BYTES_MAX) throw new UpstreamProtocolError(`response head over ${RESPONSE_HEAD_BYTES_MAX} bytes`);
          const text = latin1.decode(buf.subarray(from, end));
          // Held bytes never contain a whole terminator, so it ends inside this input.
          i = held ? i + end + 4 - held.length : end + 4;
          this.#held = null;
          this.#onHead(text);
          break;
        }
        case State.Length: {
          const take = Math.min(this.#remaining, n - i);
          if (w !== i) input.copyWithin(w, i, i + take);
          w += take;
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = State.Done;
          break;
        }
        case State.UntilClose: {
          if (w !== i) input.copyWithin(w, i, n);
          w += n - i;
          i = n;
          break;
        }
        case State.ChunkSize: {
          const c = input[i]!;
          const d = hexValue(c);
          if (d >= 0) {
            if (++this.#sizeDigits > 12) throw new UpstreamProtocolError("chunk size too large");
            this.#remaining = this.#remaining * 16 + d;
          } else if (this.#sizeDigits === 0) {
            throw new UpstreamProtocolError("chunk size line without a size");
          } else if (c === 13) {
            this.#state = State.ChunkSizeLf;
          } else if (c === 59 || c === 32 || c === 9) {
            this.#state = State.ChunkExt;
          } else {
            throw new UpstreamProtocolError("bad character in a chunk size");
          }
          this.#lineChar();
          i++;
          break;
        }
        case State.ChunkExt: {
          const c = input[i]!;
          if (c === 13) this.#state = State.ChunkSizeLf;
          else if (c === 10) throw new UpstreamProtocolError("bare LF in a chunk size line");
          this.#lineChar();
          i++;
          break;
        }
        case State.ChunkSizeLf: {
          if (input[i] !== 10) throw new UpstreamProtocolError("chunk size line not ended by CRLF");
          i++;
          this.#lineBytes = 0;
          this.#sizeDigits = 0;
          if (this.#remaining === 0) this.#state = State.TrailerStart;
          else this.#state = State.ChunkData;
          break;
        }
        case State.ChunkData: {
          const take = Math.min(this.#remaining, n - i);
          if (w !== i) input.copyWithin(w, i, i + take);
          w += take;
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = State.ChunkDataCr;
          break;
        }
        case State.ChunkDataCr: {
          if (input[i] !== 13) throw new UpstreamProtocolError("chunk data not followed by CRLF");
          i++;
          this.#state = State.ChunkDataLf;
          break;
        }
        case State.ChunkDataLf: {
          if (input[i] !== 10) throw new UpstreamProtocolError("chunk data not followed by CRLF");
          i++;
          this.#state = State.ChunkSize;
          break;
        }
        case State.TrailerStart: {
          this.#trailer();
          if (input[i] === 13) this.#state = State.TrailerEndLf;
          else this.#state = State.TrailerLine;
          i++;
          break;
        }
        case State.TrailerLine: {
          this.#trailer();
          if (input[i] === 13) this.#state = State.TrailerLf;
          i++;
          break;
        }
        case State.TrailerLf: {
          if (input[i] !== 10) throw new UpstreamProtocolError("trailer line not ended by CRLF");
          i++;
          this.#state = State.TrailerStart;
          break;
        }
        case State.TrailerEndLf: {
          if (input[i] !== 10) throw new UpstreamProtocolError("trailers not ended by CRLF");
          i++;
          this.#state = State.Done;
          break;
        }
        case State.Done: {
          this.extraBytes += n - i;
          i = n;
          break;
        }
      }
    }
    return input.subarray(0, w);
  }

  /** The provider closed the connection: fine after a whole response or a close-delimited body; otherwise throws. */
  eof(): void {
    if (this.#state === State.UntilClose) {
      this.#state = State.Done;
      return;
    }
    if (this.#state === State.Done) return;
    throw new UpstreamProtocolError(this.head ? "the connection closed inside the body" : "the connection closed before a response head");
  }

  #lineChar(): void {
    if (++this.#lineBytes > CHUNK_LINE_BYTES_MAX) throw new UpstreamProtocolError("chunk size line too long");
  }

  #trailer(): void {
    if (++this.#trailerBytes > TRAILER_BYTES_MAX) throw new UpstreamProtocolError("trailers too long");
  }

  #onHead(text: string): void {
    const lines = text.split("\r\n");
    const m = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/.exec(lines[0] ?? "");
    if (!m) throw new UpstreamProtocolError("bad status line");
    const minor = m[1]!;
    const status = Number(m[2]);
    const headers: [string, string][] = [];
    for (let k = 1; k < lines.length; k++) {
      const line = lines[k]!;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new UpstreamProtocolError("header line without a name");
      const name = line.slice(0, colon);
      if (!TOKEN.test(name)) throw new UpstreamProtocolError("bad header name");
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
      if (!FIELD_VALUE.test(value)) throw new UpstreamProtocolError("bad character in a header value");
      headers.push([name.toLowerCase(), value]);
    }
    if (status < 200) {
      if (status === 101) throw new UpstreamProtocolError("the provider switched protocols unasked");
      if (++this.#interim > INTERIM_RESPONSES_MAX) throw new UpstreamProtocolError("too many interim responses");
      return; // stay in Head: the final response follows
    }
    let keepAlive = minor === "1";
    let chunked = false;
    let teOther = false;
    let length: number | null = null;
    for (const [name, value] of headers) {
      if (name === "connection" && /(^|,)\s*close\s*(,|$)/i.test(value)) keepAlive = false;
      else if (name === "transfer-encoding") {
        const codings = value
          .toLowerCase()
          .split(",")
          .map((s) => s.trim());
        if (codings[codings.length - 1] === "chunked" && codings.length === 1) chunked = true;
        else teOther = true;
      } else if (name === "content-length") {
        if (!/^\d{1,15}$/.test(value)) throw new UpstreamProtocolError("bad content-length");
        const v = Number(value);
        if (length !== null && length !== v) throw new UpstreamProtocolError("conflicting content-length values");
        length = v;
      }
    }
    this.head = { status, headers, keepAlive };
    if (this.method === "HEAD" || status === 204 || status === 304) {
      this.#state = State.Done;
    } else if (chunked || teOther) {
      // A transfer coding beside a length: the coding wins, the length is dropped so it is never passed on
      // beside framing it does not describe, and the connection is not reused (RFC 9112 6.1 and 6.3).
      if (length !== null) {
        this.head.keepAlive = false;
        this.head.headers = headers.filter(([name]) => name !== "content-length");
      }
      if (teOther) {
        this.head.keepAlive = false;
        this.#state = State.UntilClose;
      } else {
        this.#state = State.ChunkSize;
        this.#remaining = 0;
      }
    } else if (length !== null) {
      this.#remaining = length;
      this.#state = length === 0 ? State.Done : State.Length;
    } else {
      this.head.keepAlive = false;
      this.#state = State.UntilClose;
    }
  }
}

/** Index of the CRLFCRLF that ends a head in `buf` from `from`, or -1. */
function headEnd(buf: Uint8Array, from: number): number {
  for (let i = from; i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}
