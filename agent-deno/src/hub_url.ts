/**
 * The hub's tunnel origin, as enrollment stores it in `agent.json` and the launcher grants it with
 * `--allow-net`: `https://HOST[:PORT]`, HOST a DNS name, an IPv4 address or a bracketed IPv6 address. No
 * path, query, fragment or credentials, and nothing a permission list would read as a second entry (a comma),
 * so the one value can never name more than one host.
 */

/** Longest hub URL accepted, characters. */
export const HUB_URL_CHARS_MAX = 300;

export class HubUrlError extends Error {
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`Cannot use hub URL ${JSON.stringify(input.slice(0, 80))}: ${reason}; expected https://HOST[:PORT]`);
    this.name = "HubUrlError";
  }
}

const SHAPE = /^https:\/\/([^/?#@\s]+?)(?::(\d{1,5}))?\/?$/;
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^\[[0-9a-f:.]{2,45}\]$/;

function validHost(host: string): boolean {
  if (IPV4.test(host)) return true;
  if (IPV6.test(host)) return true;
  if (host.length > 253 || /^[\d.]+$/.test(host)) return false;
  return host.split(".").every((label) => DNS_LABEL.test(label));
}

/** Parses and checks a hub URL; returns its canonical origin (`https://host[:port]`, default port dropped). */
export function parseHubUrl(input: string): string {
  if (typeof input !== "string") throw new HubUrlError(String(input), "not a string");
  if (input.length > HUB_URL_CHARS_MAX) throw new HubUrlError(input, `longer than ${HUB_URL_CHARS_MAX} characters`);
  if (!input.startsWith("https://")) throw new HubUrlError(input, "the scheme must be https");
  const m = SHAPE.exec(input);
  if (!m) throw new HubUrlError(input, "it may not carry a path, query, fragment or credentials");
  const host = m[1]!.toLowerCase();
  if (!validHost(host)) throw new HubUrlError(input, "the host is not a DNS name or an IP address");
  const port = m[2] === undefined ? null : Number(m[2]);
  if (port !== null && (port < 1 || port > 65_535)) throw new HubUrlError(input, "the port must be 1–65535");
  let url: URL;
  try {
    url = new URL(`https://${host}${port === null ? "" : `:${port}`}`);
  } catch {
    throw new HubUrlError(input, "not a URL");
  }
  // The URL parser must read the host as written: it turns names such as `0x7f.1` into IPv4 addresses. (It
  // also shortens IPv6 zero runs; the canonical form is what gets stored and granted.)
  if (!IPV6.test(host) && url.hostname !== host) throw new HubUrlError(input, "the host is not a DNS name or an IP address");
  if (url.username || url.password || url.pathname !== "/" || url.search || url.hash) throw new HubUrlError(input, "not an origin");
  return url.origin;
}

/** `host:port` of a canonical hub origin, as `--allow-net` takes it. */
export function hubNetPermission(origin: string): string {
  const url = new URL(origin);
  return `${url.hostname}:${url.port || "443"}`;
}
