/**
 * The socket calls the agent's provider connections are made of. A `Dialer` opens TCP and TLS connections; the
 * decisions around them (an https proxy or not, the proxy's CONNECT exchange, which trust roots) are made by the
 * caller (upstream_http.ts `originConnector`, egress_proxy.ts `openProxyTunnel`), the same code whichever dialer
 * it is given. `THREAD_DIALER` opens the sockets on the calling thread; an upstream Worker's dialer
 * (upstream_workers.ts) opens and holds them in a Deno Worker, and its connections are `ByteConn`s here.
 */

/** What the agent needs of a connection: Deno.Conn's byte calls. */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

export interface Dialer {
  /** A TCP connection to `hostname:port`, Nagle off. */
  tcp(hostname: string, port: number): Promise<ByteConn>;
  /** TLS over a new TCP connection (ALPN http/1.1, the certificate checked against `hostname`; `caCerts` in place of the system's roots). */
  tls(hostname: string, port: number, caCerts: string[] | undefined): Promise<ByteConn>;
  /** TLS inside `conn`, a connection this dialer's `tcp` opened (a proxy's tunnel), checked against `hostname`. */
  startTls(conn: ByteConn, hostname: string, caCerts: string[] | undefined): Promise<ByteConn>;
}

function noDelay<C extends Deno.Conn>(conn: C): C {
  (conn as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  return conn;
}

/** Sockets on the calling thread. */
export const THREAD_DIALER: Dialer = {
  tcp: async (hostname, port) => noDelay(await Deno.connect({ hostname, port })),
  tls: async (hostname, port, caCerts) => noDelay(await Deno.connectTls({ hostname, port, alpnProtocols: ["http/1.1"], caCerts })),
  startTls: (conn, hostname, caCerts) => Deno.startTls(conn as Deno.TcpConn, { hostname, alpnProtocols: ["http/1.1"], caCerts }),
};
