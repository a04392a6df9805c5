/**
 * The agent's outgoing HTTPS through a proxy, as an owner behind a corporate proxy configures it:
 *
 *   HTTPS_PROXY (else https_proxy)  http://[user:pass@]host[:port]   the proxy for https origins
 *   NO_PROXY (else no_proxy)        comma list of hosts that go direct: `*`, `example.com` (that host and its
 *                                   subdomains), `.example.com` or `*.example.com` (subdomains), `host:port`
 *
 * An https origin the list does not exempt is reached with `CONNECT host:port` — by name, since corporate
 * proxies filter by name — and TLS then runs inside the tunnel with the origin's own name, so the certificate is
 * still checked against the official host and the proxy sees neither the request nor the owner's key.
 * Plain-http origins (the loopback development upstream) always go direct. The launcher reads the same
 * variables to grant the agent the proxy's address and exactly these variables (permissions.ts).
 *
 * Credentials in the proxy URL become a `Proxy-Authorization: Basic` header; they are never logged and never
 * part of an error message (`ProxySettings.address` is host:port only).
 */
import { Buffer } from "node:buffer";

/** The variables read, in order of preference for each setting. */
export const HTTPS_PROXY_ENV = ["HTTPS_PROXY", "https_proxy"] as const;
export const NO_PROXY_ENV = ["NO_PROXY", "no_proxy"] as const;
export const PROXY_ENV: readonly string[] = [...HTTPS_PROXY_ENV, ...NO_PROXY_ENV];

/** Longest answer head (status line and headers) read from the proxy after CONNECT, bytes. */
export const PROXY_ANSWER_HEAD_BYTES_MAX = 16 * 1024;
/** Longest wait for the proxy's answer to CONNECT, ms. */
export const PROXY_ANSWER_TIMEOUT_MS = 10_000;
/** Entries of NO_PROXY kept, at most (a longer list is a configuration error). */
export const NO_PROXY_ENTRIES_MAX = 256;
/** Default proxy port when the URL gives none (as for any http:// URL). */
const PROXY_PORT_DEFAULT = 80;

/** A proxy setting that cannot be used: the launcher refuses to start, the agent exits with CONFIG. */
export class ProxyConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProxyConfigError";
  }
}

/** The proxy refused or broke a CONNECT. The message names the proxy (host:port) and its status, never credentials. */
export class ProxyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProxyError";
  }
}

interface NoProxyRule {
  /** Lower-case host without brackets; "" with `any`. */
  host: string;
  /** Subdomains only (`.example.com`, `*.example.com`), not the host itself. */
  subdomainsOnly: boolean;
  /** null: any port. */
  port: number | null;
  /** `*`: every host. */
  any: boolean;
}

export interface ProxySettings {
  readonly hostname: string;
  readonly port: number;
  /** `host:port` of the proxy: what logs, the status and the launcher's permission show. */
  readonly address: string;
  /** `Basic …` from the URL's user:pass, or null. Never logged. */
  readonly authorization: string | null;
  readonly noProxy: readonly NoProxyRule[];
}

/** Reads a variable; one the process was not granted (--allow-env) reads as unset. */
export type EnvReader = (name: string) => string | undefined;

export const grantedEnv: EnvReader = (name) => {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
};

function firstSet(env: EnvReader, names: readonly string[]): { name: string; value: string } | null {
  for (const name of names) {
    const value = env(name)?.trim();
    if (value) return { name, value };
  }
  return null;
}

let processSettings: { value: ProxySettings | null } | null = null;

/** This process's proxy settings (read once, from the variables it was granted). Throws ProxyConfigError. */
export function processProxy(): ProxySettings | null {
  processSettings ??= { value: proxyFromEnv(grantedEnv) };
  return processSettings.value;
}

/** The names among PROXY_ENV that are set (what the launcher grants the agent to read). */
export function proxyEnvSet(env: EnvReader): string[] {
  return PROXY_ENV.filter((name) => (env(name)?.trim() ?? "") !== "");
}

/** The proxy settings from the environment, or null when no https proxy is set. Throws ProxyConfigError. */
export function proxyFromEnv(env: EnvReader): ProxySettings | null {
  const proxy = firstSet(env, HTTPS_PROXY_ENV);
  if (!proxy) return null;
  const noProxy = firstSet(env, NO_PROXY_ENV);
  return parseProxySettings(proxy.name, proxy.value, noProxy?.value ?? "");
}

export function parseProxySettings(variable: string, proxyUrl: string, noProxy: string): ProxySettings {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(proxyUrl) ? proxyUrl : `http://${proxyUrl}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ProxyConfigError(`Cannot use ${variable}: not a URL (give http://HOST:PORT)`);
  }
  if (url.protocol !== "http:") {
    throw new ProxyConfigError(`Cannot use ${variable}: ${url.protocol}// proxies are not supported (give http://HOST:PORT)`);
  }
  if (!url.hostname) throw new ProxyConfigError(`Cannot use ${variable}: no proxy host`);
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const port = url.port ? Number(url.port) : PROXY_PORT_DEFAULT;
  const authorization =
    url.username || url.password ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}` : null;
  return { hostname, port, address: url.host.replace(/:\d+$/, "") + `:${port}`, authorization, noProxy: parseNoProxy(noProxy) };
}

export function parseNoProxy(list: string): NoProxyRule[] {
  const rules: NoProxyRule[] = [];
  for (const raw of list.split(/[,\s]+/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (rules.length >= NO_PROXY_ENTRIES_MAX) throw new ProxyConfigError(`Cannot use NO_PROXY: over ${NO_PROXY_ENTRIES_MAX} entries`);
    if (entry === "*") {
      rules.push({ host: "", subdomainsOnly: false, port: null, any: true });
      continue;
    }
    // host, .host, *.host, host:port, [v6], [v6]:port, or a bare IPv6 address.
    const m = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(entry);
    if (!m) {
      if (/^[0-9a-f:.]+$/.test(entry)) rules.push({ host: entry, subdomainsOnly: false, port: null, any: false });
      continue;
    }
    let host = m[1] ?? m[2]!;
    let subdomainsOnly = false;
    if (host.startsWith("*.")) host = host.slice(1);
    if (host.startsWith(".")) {
      subdomainsOnly = true;
      host = host.slice(1);
    }
    if (!host) continue;
    rules.push({ host, subdomainsOnly, port: m[3] ? Number(m[3]) : null, any: false });
  }
  return rules;
}

/** True when NO_PROXY sends `hostname:port` direct. */
export function bypassesProxy(rules: readonly NoProxyRule[], hostname: string, port: number): boolean {
  const host = hostname
    .toLowerCase()
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "");
  return rules.some((r) => {
    if (r.any) return true;
    if (r.port !== null && r.port !== port) return false;
    if (host.endsWith(`.${r.host}`)) return true;
    return !r.subdomainsOnly && host === r.host;
  });
}

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/**
 * Opens a TCP connection to the proxy and asks it for a tunnel to `hostname:port` (by name). Resolves with the
 * raw connection once the proxy answered 2xx; the caller starts TLS on it. Throws ProxyError otherwise.
 */
export async function openProxyTunnel(
  proxy: ProxySettings,
  hostname: string,
  port: number,
  answerTimeoutMs: number = PROXY_ANSWER_TIMEOUT_MS,
): Promise<Deno.TcpConn> {
  const target = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: proxy.hostname, port: proxy.port });
  } catch (error) {
    throw new ProxyError(`Cannot reach proxy ${proxy.address}: ${(error as Error).message}`);
  }
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
  }, answerTimeoutMs);
  try {
    const auth = proxy.authorization ? `proxy-authorization: ${proxy.authorization}\r\n` : "";
    await writeAll(conn, encoder.encode(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n${auth}\r\n`));
    const status = await readConnectAnswer(conn, proxy.address);
    if (status < 200 || status > 299) {
      const hint = status === 407 ? " (proxy authentication required: the credentials in HTTPS_PROXY are missing or refused)" : "";
      throw new ProxyError(`Proxy ${proxy.address} refused CONNECT to ${target}: it answered ${status}${hint}`);
    }
    conn.setNoDelay(true);
    return conn;
  } catch (error) {
    try {
      conn.close();
    } catch {
      // closed by the timer or the proxy
    }
    if (expired) throw new ProxyError(`Proxy ${proxy.address} did not answer CONNECT to ${target} within ${answerTimeoutMs} ms`);
    if (error instanceof ProxyError) throw error;
    throw new ProxyError(`Proxy ${proxy.address} broke the CONNECT to ${target}: ${(error as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/**
 * Reads the proxy's answer head (at most PROXY_ANSWER_HEAD_BYTES_MAX) and returns its status. Nothing may follow
 * the head before TLS starts (the origin speaks only after the agent's ClientHello), so bytes after it are an error.
 */
async function readConnectAnswer(conn: Deno.Conn, address: string): Promise<number> {
  const buf = new Uint8Array(PROXY_ANSWER_HEAD_BYTES_MAX);
  let got = 0;
  for (;;) {
    if (got === buf.length) throw new ProxyError(`Proxy ${address} answered CONNECT with a head over ${PROXY_ANSWER_HEAD_BYTES_MAX} bytes`);
    const n = await conn.read(buf.subarray(got));
    if (n === null) throw new ProxyError(`Proxy ${address} closed the connection before answering CONNECT`);
    got += n;
    const end = latin1.decode(buf.subarray(0, got)).indexOf("\r\n\r\n");
    if (end < 0) continue;
    if (end + 4 !== got) throw new ProxyError(`Proxy ${address} sent bytes after its answer to CONNECT`);
    const m = /^HTTP\/1\.[01] (\d{3})(?: |\r\n)/.exec(latin1.decode(buf.subarray(0, end + 2)));
    if (!m) throw new ProxyError(`Proxy ${address} answered CONNECT with a malformed status line`);
    return Number(m[1]);
  }
}
