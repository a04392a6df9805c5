/**
 * An HTTP CONNECT proxy (what `HTTPS_PROXY` points at) whose outgoing connections leave from a chosen local
 * address: on Linux every 127.x.y.z is the loopback, so a proxy dialling from 127.0.0.2 looks to the hub like
 * another machine's egress. Tests use it to give an agent's provider-call client another egress than its tunnel.
 */
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { track } from "./tcp_proxy.ts";

export interface ConnectProxy {
  /** `http://127.0.0.1:PORT`, for HTTPS_PROXY. */
  url: string;
  /** CONNECT targets seen, `host:port`. */
  tunnels: string[];
  /** Each CONNECT's Proxy-Authorization header (null: none), in the same order. */
  authorizations: (string | null)[];
  close(): Promise<void>;
}

export async function startConnectProxy(outgoingAddress: string): Promise<ConnectProxy> {
  const tunnels: string[] = [];
  const authorizations: (string | null)[] = [];
  const open = new Set<net.Socket>();
  const server = http.createServer((_req, res) => res.writeHead(405).end());
  server.on("connect", (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const target = req.url ?? "";
    const colon = target.lastIndexOf(":");
    tunnels.push(target);
    authorizations.push(req.headers["proxy-authorization"] ?? null);
    const upstream = net.connect({ host: target.slice(0, colon), port: Number(target.slice(colon + 1)), localAddress: outgoingAddress }, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    track(open, client, upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tunnels,
    authorizations,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
