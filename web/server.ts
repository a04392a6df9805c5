/**
 * The portal's HTTP server: Next.js's own request handler (what `next start` runs) behind a listener that
 * knows the socket. Every request gets `x-wellspring-client-address` set to its client address (the socket
 * peer, or the X-Forwarded-For entry of the first untrusted hop when the peer is a trusted proxy), replacing
 * whatever the client sent; the app's throttles read only that header (lib/client-address.ts).
 *
 * Run from anywhere: `tsx web/server.ts` (npm start does). Environment: WEB_PORT (3000), HOST (127.0.0.1),
 * TRUSTED_PROXIES (none), and what the app itself reads (docs/operations/portal.md). `GET /healthz` (the process
 * answers) and `GET /readyz` (the database answers; 503 while it does not) are answered here, for load
 * balancers and container health checks.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import next from "next";
import { CLIENT_ADDRESS_HEADER, markClientAddressServer, parseTrustedProxies, resolveClientAddress } from "./lib/client-address.ts";
import { Readiness } from "./lib/readiness.ts";

const dir = dirname(fileURLToPath(import.meta.url));
const port = Number(process.env.WEB_PORT ?? 3000);
const hostname = process.env.HOST ?? "127.0.0.1";
/** How long a stopping server waits for open requests before it exits anyway, ms. */
const STOP_GRACE_MS = 5_000;
const trust = parseTrustedProxies(process.env.TRUSTED_PROXIES);

/** How long a starting portal asks a browser to wait before it retries, seconds. */
const STARTING_RETRY_SECONDS = 2;

markClientAddressServer();
const app = next({ dev: false, dir, hostname, port });
// The port is taken at once and answers 503 "starting" until Next.js has loaded, so nothing is refused meanwhile.
let handle: ReturnType<typeof app.getRequestHandler> | null = null;

const readiness = new Readiness(process.env.DATABASE_URL);

const server = createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0];
  if (path === "/healthz") {
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" }).end('{"ok":true}');
    return;
  }
  if (path === "/readyz") {
    // Ready once Next.js has loaded and the database answers.
    void readiness.check().then((r) => {
      const ready = r.ready && handle !== null;
      res
        .writeHead(ready ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" })
        .end(JSON.stringify({ ready, portal: handle ? "loaded" : "starting", database: r.ready ? "reachable" : "unreachable" }));
    });
    return;
  }
  if (!handle) {
    res.writeHead(503, { "content-type": "text/plain; charset=utf-8", "retry-after": String(STARTING_RETRY_SECONDS), "cache-control": "no-store" });
    res.end("The portal is starting; retry in a moment.\n");
    return;
  }
  req.headers[CLIENT_ADDRESS_HEADER] = resolveClientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"], trust);
  void handle(req, res);
});
await new Promise<void>((resolve) => server.listen(port, hostname, resolve));
await app.prepare();
handle = app.getRequestHandler();
console.log(`portal ready on http://${hostname}:${(server.address() as AddressInfo).port}`);

const stop = () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), STOP_GRACE_MS).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
