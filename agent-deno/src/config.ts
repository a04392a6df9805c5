/**
 * The owner's local configuration (`<data>/config.json`) and the agent's identity (`<data>/agent.json`,
 * `<data>/agent-key.pk8`, mode 0600). Provider keys come from the config file or from named environment
 * variables; they are read here and never leave this process except as credentials to the provider.
 */
import { PROVIDERS, type Provider } from "../../protocol/src/mod.ts";
import { HubUrlError, parseHubUrl } from "./hub_url.ts";
import { isPin } from "./pinned_tls.ts";
import { EndpointError, officialOrigin, type Upstream } from "./providers.ts";

export interface UpstreamConfig {
  provider: Provider;
  resource?: string;
  models: string[];
  /** The key itself (keep config.json at mode 0600), or… */
  apiKey?: string;
  /** …the name of an environment variable holding it (granted with --allow-env by the launcher). */
  apiKeyEnv?: string;
}

export interface AgentConfig {
  name: string;
  upstreams: UpstreamConfig[];
  /** Streams this agent serves at once. Default 256. */
  concurrentStreamsMax: number;
  logLevel: "debug" | "info" | "warn" | "error";
  /** While an administrator has suspended the agent, how long it waits before asking the hub again, seconds. Default 300. */
  suspendedRetrySeconds: number;
}

/** The shortest and longest `suspendedRetrySeconds`. */
export const SUSPENDED_RETRY_SECONDS_MIN = 1;
export const SUSPENDED_RETRY_SECONDS_MAX = 3_600;

export interface Identity {
  agentId: string;
  hubId: string;
  /** The hub's tunnel origin, e.g. `https://hub.example.com:8788`. */
  hubUrl: string;
  /** Accepted SPKI pins of the hub's TLS key (`sha256/<base64>`); a backup pin allows key rotation. */
  pins: string[];
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function fail(message: string): never {
  throw new ConfigError(`Cannot load agent configuration: ${message}`);
}

export function parseConfig(raw: unknown): AgentConfig {
  if (typeof raw !== "object" || raw === null) fail("config.json must hold an object");
  const r = raw as Record<string, unknown>;
  if (!Array.isArray(r.upstreams) || r.upstreams.length === 0) fail("`upstreams` must list at least one provider");
  const upstreams = r.upstreams.map((u: unknown, i: number): UpstreamConfig => {
    if (typeof u !== "object" || u === null) fail(`upstreams[${i}] must be an object`);
    const x = u as Record<string, unknown>;
    if (!PROVIDERS.includes(x.provider as Provider)) fail(`upstreams[${i}].provider must be one of ${PROVIDERS.join(", ")}`);
    if (!Array.isArray(x.models) || x.models.length === 0 || !x.models.every((m) => typeof m === "string" && /^[\w.:\/@-]{1,256}$/.test(m))) {
      fail(`upstreams[${i}].models must list model names`);
    }
    if (x.apiKey !== undefined && typeof x.apiKey !== "string") fail(`upstreams[${i}].apiKey must be a string`);
    if (x.apiKeyEnv !== undefined && (typeof x.apiKeyEnv !== "string" || !/^[A-Z_][A-Z0-9_]{0,63}$/.test(x.apiKeyEnv))) {
      fail(`upstreams[${i}].apiKeyEnv must be an environment variable name`);
    }
    if (!x.apiKey && !x.apiKeyEnv) fail(`upstreams[${i}] needs apiKey or apiKeyEnv`);
    const cfg: UpstreamConfig = { provider: x.provider as Provider, models: x.models as string[] };
    if (typeof x.resource === "string") cfg.resource = x.resource;
    if (typeof x.apiKey === "string") cfg.apiKey = x.apiKey;
    if (typeof x.apiKeyEnv === "string") cfg.apiKeyEnv = x.apiKeyEnv;
    try {
      officialOrigin(cfg);
    } catch (e) {
      fail(`upstreams[${i}]: ${(e as EndpointError).message}`);
    }
    return cfg;
  });
  const streams = r.concurrentStreamsMax ?? 256;
  if (typeof streams !== "number" || !Number.isInteger(streams) || streams < 1 || streams > 65_536) fail("concurrentStreamsMax must be 1–65536");
  const logLevel = (r.logLevel ?? "info") as AgentConfig["logLevel"];
  if (!["debug", "info", "warn", "error"].includes(logLevel)) fail("logLevel must be debug, info, warn or error");
  const suspendedRetry = r.suspendedRetrySeconds ?? 300;
  if (
    typeof suspendedRetry !== "number" ||
    !Number.isInteger(suspendedRetry) ||
    suspendedRetry < SUSPENDED_RETRY_SECONDS_MIN ||
    suspendedRetry > SUSPENDED_RETRY_SECONDS_MAX
  ) {
    fail(`suspendedRetrySeconds must be ${SUSPENDED_RETRY_SECONDS_MIN}–${SUSPENDED_RETRY_SECONDS_MAX}`);
  }
  return {
    name: typeof r.name === "string" ? r.name.slice(0, 80) : "agent",
    upstreams,
    concurrentStreamsMax: streams,
    logLevel,
    suspendedRetrySeconds: suspendedRetry,
  };
}

export async function loadConfig(dataDir: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dataDir}/config.json`);
  } catch (e) {
    fail(`cannot read ${dataDir}/config.json (${(e as Error).message})`);
  }
  try {
    return parseConfig(JSON.parse(text));
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    fail(`${dataDir}/config.json is not valid JSON`);
  }
}

/** Resolves keys from the config or the environment. */
export function resolveUpstreams(config: AgentConfig): Upstream[] {
  return config.upstreams.map((u, i) => {
    const apiKey = u.apiKey ?? (u.apiKeyEnv ? Deno.env.get(u.apiKeyEnv) : undefined);
    if (!apiKey) fail(`upstreams[${i}] (${u.provider}): environment variable ${u.apiKeyEnv} is not set`);
    return { provider: u.provider, resource: u.resource, models: u.models, apiKey };
  });
}

export async function loadIdentity(dataDir: string): Promise<Identity> {
  let raw: unknown;
  try {
    raw = JSON.parse(await Deno.readTextFile(`${dataDir}/agent.json`));
  } catch {
    throw new ConfigError(`Cannot start agent: ${dataDir}/agent.json is missing; enroll first (./wellspring-agent enroll)`);
  }
  return parseIdentity(raw, `${dataDir}/agent.json`);
}

/** Checks agent.json: the hub URL goes into the agent's network permission, so it must be exactly one origin. */
export function parseIdentity(raw: unknown, file = "agent.json"): Identity {
  const { agentId, hubId, hubUrl, pins } = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  if (typeof agentId !== "string" || typeof hubId !== "string" || typeof hubUrl !== "string" || !Array.isArray(pins) || pins.length === 0) {
    throw new ConfigError(`Cannot start agent: ${file} is incomplete; enroll again`);
  }
  let origin: string;
  try {
    origin = parseHubUrl(hubUrl);
  } catch (error) {
    throw new ConfigError(`Cannot start agent: ${file}: ${(error as HubUrlError).message}`);
  }
  if (!pins.every((p) => typeof p === "string" && isPin(p))) throw new ConfigError(`Cannot start agent: ${file}: every pin must look like sha256/<base64>`);
  return { agentId, hubId, hubUrl: origin, pins: pins as string[] };
}

export async function loadPrivateKey(dataDir: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(`${dataDir}/agent-key.pk8`);
  } catch {
    throw new ConfigError(`Cannot start agent: ${dataDir}/agent-key.pk8 is missing; enroll first`);
  }
}
