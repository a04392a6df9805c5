/**
 * A TCP proxy a test can cut: stands between a process and PostgreSQL (or any TCP service) so the test can take
 * the service away mid-run — `cut()` resets every open connection and refuses new ones (as a crashed server or
 * a dropped route would), `restore()` lets connections through again. `retarget()` sends new connections
 * elsewhere (a load balancer taking a dead backend out).
 */
import net from "node:net";
import type { AddressInfo } from "node:net";

export interface TcpProxy {
  port: number;
  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string;
  cut(): void;
  restore(): void;
  /** New connections go to `to` from now on (open ones stay where they are). */
  retarget(to: { host: string; port: number }): void;
  close(): Promise<void>;
}

/** Keeps both ends of a proxied connection in `open` until either closes or fails; then destroys both. */
export function track(open: Set<net.Socket>, client: net.Socket, upstream: net.Socket): void {
  open.add(client);
  open.add(upstream);
  const drop = () => {
    client.destroy();
    upstream.destroy();
    open.delete(client);
    open.delete(upstream);
  };
  client.on("error", drop).on("close", drop);
  upstream.on("error", drop).on("close", drop);
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<net.Socket>();
  let cut = false;
  let current = target;
  const server = net.createServer((client) => {
    if (cut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(current.port, current.host);
    track(open, client, upstream);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    via(url: string) {
      const u = new URL(url);
      u.hostname = "127.0.0.1";
      u.port = String(port);
      return u.toString();
    },
    cut() {
      cut = true;
      for (const s of open) s.resetAndDestroy();
      open.clear();
    },
    restore() {
      cut = false;
    },
    retarget(to) {
      current = to;
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
