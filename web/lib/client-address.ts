/**
 * The address a portal request came from, for the throttles. `next start` cannot tell it: Next.js sets
 * `x-forwarded-for` from the socket only when the request has none (`??=` in `base-server.js`), so a client
 * that sends its own header is believed, and route handlers never see the socket. The portal therefore runs
 * through `web/server.ts`, which takes the socket peer, walks `X-Forwarded-For` right to left past the
 * configured trusted proxies only (`TRUSTED_PROXIES`), and hands the result to the app in one header that it
 * always overwrites. This module is shared by that server and the app; it must not import "server-only".
 */
import ipaddr from "ipaddr.js";
import proxyaddr from "proxy-addr";

/** The header `web/server.ts` sets on every request (any value the client sent is replaced). */
export const CLIENT_ADDRESS_HEADER = "x-wellspring-client-address";
/** The address every request gets when the portal does not run under `web/server.ts` (e.g. `next dev`). */
export const UNKNOWN_ADDRESS = "unknown";

const SERVER_MARK = Symbol.for("wellspring.portal.clientAddressServer");

/** Called by `web/server.ts` before Next.js loads: from then on the app believes the header (same process). */
export function markClientAddressServer(): void {
  (globalThis as Record<symbol, unknown>)[SERVER_MARK] = true;
}

export type TrustFn = (address: string, hop: number) => boolean;

export class TrustedProxiesError extends Error {
  constructor(entry: string) {
    super(`TRUSTED_PROXIES: "${entry}" is not an IP address, a CIDR range or one of loopback, linklocal, uniquelocal`);
    this.name = "TrustedProxiesError";
  }
}

/**
 * Parses `TRUSTED_PROXIES`: IP addresses and CIDR ranges separated by commas or spaces, plus proxy-addr's
 * names `loopback`, `linklocal`, `uniquelocal`. Empty or unset: no proxy is trusted. Throws on a bad entry.
 */
export function parseTrustedProxies(text: string | undefined): TrustFn {
  const entries = (text ?? "").split(/[\s,]+/).filter(Boolean);
  for (const entry of entries) {
    try {
      proxyaddr.compile(entry);
    } catch {
      throw new TrustedProxiesError(entry);
    }
  }
  return proxyaddr.compile(entries);
}

/** An address in one canonical form (IPv4-mapped IPv6 as IPv4, IPv6 compressed), or null when it is none. */
export function canonicalAddress(text: string | undefined): string | null {
  if (!text || !ipaddr.isValid(text)) return null;
  return ipaddr.process(text).toString();
}

/**
 * The client of a request whose socket peer is `peer`: the peer itself unless it is a trusted proxy; then the
 * `X-Forwarded-For` entries from the right, skipping trusted proxies, up to the first one that is not. An
 * entry that is not an address stops the walk at the trusted hop that sent it.
 */
export function resolveClientAddress(peer: string | undefined, forwardedFor: string | string[] | undefined, trust: TrustFn): string {
  const header = Array.isArray(forwardedFor) ? forwardedFor.join(", ") : forwardedFor;
  const hops = proxyaddr.all({ socket: { remoteAddress: peer }, headers: { "x-forwarded-for": header } } as never, trust);
  // hops = [peer, trusted…, client]; the last is the first untrusted one (or the farthest, when all are trusted).
  for (let i = hops.length - 1; i >= 0; i--) {
    const address = canonicalAddress(hops[i]);
    if (address) return address;
  }
  return UNKNOWN_ADDRESS;
}

/**
 * The key a client address is counted under: an IPv4 address as it is; an IPv6 address by its /64 (one
 * customer network usually holds a whole /64, so counting single addresses would count nothing).
 */
export function addressKey(address: string): string {
  if (!ipaddr.isValid(address)) return address;
  const parsed = ipaddr.process(address);
  if (parsed.kind() === "ipv4") return parsed.toString();
  const bytes = parsed.toByteArray().slice(0, 8).concat(new Array<number>(8).fill(0));
  return `${ipaddr.fromByteArray(bytes).toString()}/64`;
}

/** The client address the portal server resolved for this request, from its headers. */
export function clientAddressOf(headers: Headers | Record<string, unknown> | undefined): string {
  if ((globalThis as Record<symbol, unknown>)[SERVER_MARK] !== true) return UNKNOWN_ADDRESS;
  const value = headers instanceof Headers ? headers.get(CLIENT_ADDRESS_HEADER) : headers?.[CLIENT_ADDRESS_HEADER];
  return typeof value === "string" && value ? value : UNKNOWN_ADDRESS;
}
