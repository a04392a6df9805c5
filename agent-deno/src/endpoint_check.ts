/**
 * Official endpoints, checked by address. The host names are fixed in code (providers.ts), but what a name
 * resolves to is decided on the owner's machine: a hosts-file line or a local DNS server can send
 * `api.openai.com` to a relay. Before a provider call the agent resolves the host with the system resolver (the
 * same getaddrinfo lookup, /etc/hosts included, that the provider client's Deno.connect uses) and checks every address against
 * the provider's published networks (provider_networks_data.ts, generated offline from a public IP-to-ASN
 * dataset by scripts/provider_networks.ts). Any address outside them refuses the call: RESET ENDPOINT_FORBIDDEN,
 * reported to the hub (CONTROL ENDPOINT_REPORT) and logged for the owner.
 *
 * What this does not close (docs/ARCHITECTURE.md, "Known limits"): the provider client (upstream_http.ts)
 * resolves the host again when it opens a connection, so an answer that changes between the check and the
 * connect is not seen (the gap is the verdict cache time at most). Connecting to the checked address instead is
 * not possible under Deno's `--allow-net`, which grants names, not addresses (a provider's networks cannot be
 * listed in it); and behind a proxy (egress_proxy.ts) the proxy resolves the name, not the agent.
 */
import { lookup } from "node:dns/promises";
import type { Provider } from "../../protocol/src/mod.ts";
import { PROVIDER_NETWORKS } from "./provider_networks_data.ts";

/** How long a verdict for a host is reused before the host is resolved again, ms. */
export const ENDPOINT_VERDICT_CACHE_MS = 30_000;
/**
 * Shortest time between two ENDPOINT_REPORTs the agent sends the hub for one provider host, ms. Calls are refused
 * every time; the report (what the hub flags) goes at most once per host per interval, whatever the call rate.
 */
export const ENDPOINT_REPORT_INTERVAL_MS = 10 * 60_000;
/** Addresses of one host a verdict keeps (and the report carries), the first resolved. */
export const ENDPOINT_ADDRESSES_MAX = 16;

/** Resolves a host name to its addresses (IPv4 or IPv6 text). Throws when it cannot. */
export type Resolver = (host: string) => Promise<string[]>;

/** The system resolver (getaddrinfo, /etc/hosts first): what Deno.connect itself connects with. Needs --allow-net=<host>. */
export const systemResolver: Resolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** A fixed answer per host, for tests and development (`--dev-resolve HOST=IP[,IP]`); other hosts do not resolve. */
export function staticResolver(answers: ReadonlyMap<string, string[]>): Resolver {
  return (host) => {
    const addresses = answers.get(host);
    return addresses ? Promise.resolve([...addresses]) : Promise.reject(new Error(`${host} is not in the development resolver`));
  };
}

/** Parses `HOST=IP[,IP…]` (the launcher's `--dev-resolve`). */
export function parseDevResolve(specs: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const spec of specs) {
    const [host, list] = spec.split("=", 2);
    const addresses = (list ?? "").split(",").filter((a) => a !== "");
    if (!host || !/^[a-z0-9.-]+$/.test(host) || addresses.length === 0 || addresses.some((a) => parseAddress(a) === null)) {
      throw new Error(`Cannot use --dev-resolve ${spec}: expected HOST=IP[,IP…]`);
    }
    out.set(host, addresses);
  }
  return out;
}

interface Address {
  v6: boolean;
  value: bigint;
}

function parseV4(text: string): bigint | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let n = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    n = (n << 8n) | BigInt(Number(p));
  }
  return n;
}

/** IPv4 or IPv6 text to a number; an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) counts as its IPv4 address. */
export function parseAddress(text: string): Address | null {
  const v4 = parseV4(text);
  if (v4 !== null) return { v6: false, value: v4 };
  if (!/^[0-9a-fA-F:.]+$/.test(text) || !text.includes(":")) return null;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(text);
  if (mapped) {
    const inner = parseV4(mapped[1]!);
    return inner === null ? null : { v6: false, value: inner };
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  let n = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return { v6: true, value: n };
}

type Ranges = { v4: [bigint, bigint][]; v6: [bigint, bigint][] };

function rangesOf(cidrs: readonly string[]): Ranges {
  const out: Ranges = { v4: [], v6: [] };
  for (const cidr of cidrs) {
    const [base, bits] = cidr.split("/");
    const a = parseAddress(base!);
    if (!a) throw new Error(`bad network ${cidr}`);
    const width = a.v6 ? 128n : 32n;
    const host = width - BigInt(Number(bits));
    const start = (a.value >> host) << host;
    (a.v6 ? out.v6 : out.v4).push([start, start + (1n << host) - 1n]);
  }
  for (const list of [out.v4, out.v6]) list.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  return out;
}

function inRanges(list: [bigint, bigint][], value: bigint): boolean {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [start, end] = list[mid]!;
    if (value < start) hi = mid - 1;
    else if (value > end) lo = mid + 1;
    else return true;
  }
  return false;
}

/** The published networks of each provider, parsed once. */
export class ProviderNetworks {
  readonly #ranges = new Map<Provider, Ranges>();

  constructor(table: Readonly<Record<Provider, readonly string[]>> = PROVIDER_NETWORKS) {
    for (const [provider, cidrs] of Object.entries(table) as [Provider, readonly string[]][]) this.#ranges.set(provider, rangesOf(cidrs));
  }

  /** True when `address` (IPv4 or IPv6 text) is inside one of `provider`'s networks. */
  contains(provider: Provider, address: string): boolean {
    const a = parseAddress(address);
    const ranges = this.#ranges.get(provider);
    if (!a || !ranges) return false;
    return inRanges(a.v6 ? ranges.v6 : ranges.v4, a.value);
  }
}

export type EndpointVerdict =
  /** Every address is in the provider's networks; `address` is the first, the one to connect to. */
  | { kind: "allowed"; host: string; addresses: string[]; address: string }
  /** At least one address is outside; `fresh` is false when the verdict came from the cache (already reported). */
  | { kind: "forbidden"; host: string; addresses: string[]; outside: string[]; fresh: boolean }
  /** The host did not resolve: the provider is unreachable from here, not forbidden. */
  | { kind: "unresolved"; host: string; error: string };

export interface EndpointGuardOptions {
  /** Default: the system resolver. */
  resolver?: Resolver;
  /** Default: the generated table. */
  networks?: ProviderNetworks;
  /** How long a verdict is reused, ms. Default ENDPOINT_VERDICT_CACHE_MS. */
  cacheMs?: number;
  /** Default Date.now. */
  now?: () => number;
}

/**
 * Checks a provider host before the agent connects to it. One lookup per host per cache period; concurrent
 * checks of one host share it. Hosts are the few named in the agent's config, so the cache stays that small.
 */
export class EndpointGuard {
  readonly #resolver: Resolver;
  readonly #networks: ProviderNetworks;
  readonly #cacheMs: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, { at: number; verdict: Promise<EndpointVerdict> }>();

  constructor(o: EndpointGuardOptions = {}) {
    this.#resolver = o.resolver ?? systemResolver;
    this.#networks = o.networks ?? new ProviderNetworks();
    this.#cacheMs = o.cacheMs ?? ENDPOINT_VERDICT_CACHE_MS;
    this.#now = o.now ?? Date.now;
  }

  /** The verdict for `host` as an endpoint of `provider`. Never throws. */
  async check(provider: Provider, host: string): Promise<EndpointVerdict> {
    const key = `${provider} ${host}`;
    const cached = this.#cache.get(key);
    if (cached && this.#now() - cached.at < this.#cacheMs) {
      const verdict = await cached.verdict;
      return verdict.kind === "forbidden" ? { ...verdict, fresh: false } : verdict;
    }
    const verdict = this.#resolve(provider, host);
    this.#cache.set(key, { at: this.#now(), verdict });
    const settled = await verdict;
    // A failed lookup is not kept: the next call tries again.
    if (settled.kind === "unresolved") this.#cache.delete(key);
    return settled;
  }

  async #resolve(provider: Provider, host: string): Promise<EndpointVerdict> {
    let addresses: string[];
    try {
      addresses = (await this.#resolver(host)).slice(0, ENDPOINT_ADDRESSES_MAX);
    } catch (error) {
      return { kind: "unresolved", host, error: (error as Error).message };
    }
    if (addresses.length === 0) return { kind: "unresolved", host, error: "no addresses" };
    const outside = addresses.filter((a) => !this.#networks.contains(provider, a));
    if (outside.length > 0) return { kind: "forbidden", host, addresses, outside, fresh: true };
    return { kind: "allowed", host, addresses, address: addresses[0]! };
  }
}

/**
 * One ENDPOINT_REPORT per host per interval (ENDPOINT_REPORT_INTERVAL_MS). Keys are the provider hosts of the
 * agent's config, so the map stays that small.
 */
export class EndpointReportThrottle {
  readonly #lastAt = new Map<string, number>();

  constructor(
    readonly intervalMs: number = ENDPOINT_REPORT_INTERVAL_MS,
    readonly now: () => number = Date.now,
  ) {}

  /** True when a report for `host` may go now (and counts it as sent); false within the interval of the last one. */
  take(host: string): boolean {
    const t = this.now();
    const last = this.#lastAt.get(host);
    if (last !== undefined && t - last < this.intervalMs) return false;
    this.#lastAt.set(host, t);
    return true;
  }
}
