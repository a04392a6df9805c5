/**
 * TLS to the hub with a public-key pin. Deno's own TLS API exposes no peer certificate, so this uses
 * node:tls: the handshake completes, the peer's SubjectPublicKeyInfo is hashed and compared with the pins,
 * and only then does any byte of ours (the WebSocket upgrade, an enrollment token) go out. A certificate a
 * system CA would accept is still refused when its key is not pinned.
 */
import net from "node:net";
import tls from "node:tls";
import { createHash, X509Certificate } from "node:crypto";

export class PinMismatchError extends Error {
  constructor(readonly seenPin: string) {
    super(`Cannot connect to hub: pinned key does not match (hub presented ${seenPin})`);
    this.name = "PinMismatchError";
  }
}

export function isPin(value: string): boolean {
  return /^sha256\/[A-Za-z0-9+/]{43}=$/.test(value);
}

/** `sha256/<base64>` of the peer certificate's SubjectPublicKeyInfo (DER), as the hub computes it. */
function peerPin(socket: tls.TLSSocket): string {
  const raw = (socket.getPeerCertificate(false) as { raw?: Uint8Array } | null)?.raw;
  if (!raw || raw.length === 0) return "(no certificate)";
  const spki = new X509Certificate(raw).publicKey.export({ type: "spki", format: "der" }) as Uint8Array;
  return `sha256/${createHash("sha256").update(spki).digest("base64")}`;
}

/** Opens a TLS connection to `origin` and resolves only if the peer's key matches one of `pins`. */
export function connectPinned(origin: URL, pins: readonly string[], timeoutMs = 10_000): Promise<tls.TLSSocket> {
  if (origin.protocol !== "https:" && origin.protocol !== "wss:") {
    return Promise.reject(new Error(`Cannot connect to hub: ${origin.protocol} is not TLS; use https://`));
  }
  if (pins.length === 0 || !pins.every(isPin)) return Promise.reject(new Error("Cannot connect to hub: no valid pin configured"));
  const host = origin.hostname.replace(/^\[|\]$/g, "");
  const isIp = /^[\d.]+$|:/.test(host);
  return new Promise((resolve, reject) => {
    // TCP first, with Nagle off (small frames must not wait for delayed ACKs), then TLS over it.
    const raw = net.connect({ host, port: Number(origin.port || 443) });
    raw.setNoDelay(true);
    const socket = tls.connect({
      socket: raw,
      servername: isIp ? undefined : host,
      // Chain validation is replaced by the pin: only a pinned key is accepted, CA-signed or not.
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`Cannot connect to hub: TLS handshake took over ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const seen = peerPin(socket);
      if (!pins.includes(seen)) {
        socket.destroy();
        reject(new PinMismatchError(seen));
        return;
      }
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`Cannot connect to hub: ${error.message}`));
    });
  });
}
