/**
 * Official provider endpoints, fixed in code. The agent calls nothing else — except, for tests and the demo,
 * a development origin that must be on loopback and must be enabled explicitly (see `checkDevOrigin`).
 */
import type { ApiFamily, Provider } from "../../protocol/src/mod.ts";
import type { ForwardedRequest } from "./forward_rules.ts";

export const OFFICIAL_ORIGINS = {
  openai: "https://api.openai.com",
  anthropic: "https://api.anthropic.com",
} as const;

/** Azure OpenAI resources live under this domain; the resource name is the only variable part. */
export const AZURE_DOMAIN = "openai.azure.com";
const AZURE_RESOURCE = /^[a-z0-9][a-z0-9-]{1,62}$/;

export interface Upstream {
  provider: Provider;
  /** Azure resource name (`https://<resource>.openai.azure.com`); required for azure, refused otherwise. */
  resource?: string;
  models: string[];
  apiKey: string;
}

export class EndpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EndpointError";
  }
}

/** Hosts (host:port) the agent needs network access to for these upstreams. */
export function upstreamHosts(upstreams: Pick<Upstream, "provider" | "resource">[]): string[] {
  const hosts = new Set<string>();
  for (const u of upstreams) hosts.add(new URL(officialOrigin(u)).host + ":443");
  return [...hosts];
}

export function officialOrigin(u: Pick<Upstream, "provider" | "resource">): string {
  switch (u.provider) {
    case "openai":
      return OFFICIAL_ORIGINS.openai;
    case "anthropic":
      return OFFICIAL_ORIGINS.anthropic;
    case "azure":
      if (!u.resource || !AZURE_RESOURCE.test(u.resource)) throw new EndpointError("Cannot use Azure OpenAI: resource name is missing or invalid");
      return `https://${u.resource}.${AZURE_DOMAIN}`;
  }
}

const LOOPBACK_HOST = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]|localhost)$/;

/** Validates a development origin: http(s), loopback host, no path. Throws EndpointError otherwise. */
export function checkDevOrigin(origin: string): string {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    throw new EndpointError(`Cannot use development upstream ${origin}: not a URL`);
  }
  if (!/^https?:$/.test(url.protocol) || !LOOPBACK_HOST.test(url.hostname) || (url.pathname !== "/" && url.pathname !== "")) {
    throw new EndpointError(`Cannot use development upstream ${origin}: only a loopback origin (http://127.0.0.1:PORT) is allowed`);
  }
  return url.origin;
}

/**
 * The URL a checked request goes to (see forward_rules.ts). Azure's v1 API (`/openai/v1/…`) takes no
 * `api-version`; a user's is never forwarded, so the version is the agent's choice, not the caller's.
 */
export function upstreamUrl(u: Pick<Upstream, "provider" | "resource">, request: ForwardedRequest, devOrigin: string | null): string {
  if (!request.path.startsWith("/v1/")) throw new EndpointError("Cannot build upstream URL: path must start with /v1/");
  const pathAndQuery = request.path + request.query;
  if (devOrigin) return devOrigin + pathAndQuery;
  if (u.provider === "azure") return `${officialOrigin(u)}/openai${pathAndQuery}`;
  return officialOrigin(u) + pathAndQuery;
}

/** Credential headers for the provider. */
export function authHeaders(u: Upstream): [string, string][] {
  switch (u.provider) {
    case "openai":
      return [["authorization", `Bearer ${u.apiKey}`]];
    case "azure":
      return [["api-key", u.apiKey]];
    case "anthropic":
      return [["x-api-key", u.apiKey]];
  }
}

export function familyOf(provider: Provider): ApiFamily {
  return provider === "anthropic" ? "anthropic" : "openai";
}

/** `kfp_` + hex of HMAC-SHA256 under a fixed context: the same key gives the same fingerprint on every agent. */
export async function keyFingerprint(apiKey: string): Promise<string> {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", enc.encode("wellspring/key-fingerprint/v1"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(apiKey)));
  return "kfp_" + Array.from(mac.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
}
