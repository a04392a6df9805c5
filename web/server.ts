/**
 * The portal's HTTP server: Next.js's own request handler (what `next start` runs) behind a listener that
 * knows the socket. Every request gets `x-wellspring-client-address` set to its client address (the socket
 * peer, or the X-Forwarded-For entry of the first untrusted hop when the peer is a trusted proxy), replacing
 * whatever the client sent; the app's throttles read only that header (lib/client-address.ts).
 *
 * Run from anywhere: `tsx web/server.ts` (npm start does). Environment: WEB_PORT (3000), HOST (127.0.0.1),
 * TRUSTED_PROXIES (none), and what the app itself reads (docs/operations/portal.md).
 */
import { createServer } from "node:http";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import next from "next";
import { CLIENT_ADDRESS_HEADER, markClientAddressServer, parseTrustedProxies, resolveClientAddress } from "./lib/client-address.ts";

const dir = dirname(fileURLToPath(import.meta.url));
const port = Number(process.env.WEB_PORT ?? 3000);
const hostname = process.env.HOST ?? "127.0.0.1";
/** How long a stopping server waits for open requests before it exits anyway, ms. */
const STOP_GRACE_MS = 5_000;
const trust = parseTrustedProxies(process.env.TRUSTED_PROXIES);

markClientAddressServer();
const app = next({ dev: false, dir, hostname, port });
await app.prepare();
const handle = app.getRequestHandler();

const server = createServer((req, res) => {
  req.headers[CLIENT_ADDRESS_HEADER] = resolveClientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"], trust);
  void handle(req, res);
});
server.listen(port, hostname, () => {
  console.log(`portal listening on http://${hostname}:${port}`);
});

const stop = () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), STOP_GRACE_MS).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
