/**
 * Several gateways: a request landing on this gateway for a model whose agents are connected to another one is
 * forwarded there over a gateway link. This module is the gateway's side of it:
 *
 * - it announces where it takes forwarded requests (`gateway_peers`: link URL, TLS pin, secret), renewed every
 *   `PEER_RENEW_INTERVAL_MS`, and withdraws it on shutdown;
 * - it reads, every `PEER_REFRESH_INTERVAL_MS`, the other live gateways and the agents they hold (their presence
 *   rows), and offers those agents to routing as `RemoteAgent`s, each an `AgentLink` over the link to its
 *   gateway (one link per gateway, dialled when that gateway appears);
 * - it accepts the other gateways' links (`upgrade`), checking the secret before the WebSocket exists.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { WebSocketServer } from "ws";
import { apiFamilyOf, PROVIDERS, type ApiFamily, type Provider, type RequestHead, type SettlementStatement, type Settings } from "@wellspring/protocol";
import type { Db } from "@wellspring/db/core";
import type { Logger } from "../log.ts";
import type { AgentLink, HubStream, StreamSink } from "../tunnel/hub_stream.ts";
import type { AgentProfile, AgentRegistry } from "../tunnel/registry.ts";
import { announcePeer, PEER_RENEW_INTERVAL_MS, readPeers, withdrawPeer, type PeerRow, type RemoteAgentRow } from "./directory.ts";
import { PEER_GATEWAY_HEADER, PEER_PATH, PeerLink } from "./link.ts";
import { PeerSession } from "./session.ts";

export { PEER_PATH } from "./link.ts";
export { PEER_TTL_MS, PEER_RENEW_INTERVAL_MS } from "./directory.ts";

/** How often the other gateways and their agents are read, ms: an agent that moved is routed to within this (plus a query). */
export const PEER_REFRESH_INTERVAL_MS = 500;

/** Whether a link's upgrade request carries `secret` (`Authorization: Bearer …`), compared in constant time. */
export function presentsSecret(req: Pick<IncomingMessage, "headers">, secret: string): boolean {
  const presented = Buffer.from(String(req.headers.authorization ?? "").replace(/^Bearer /, ""));
  const expected = Buffer.from(secret);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

/** An agent connected to another gateway, reached through the link to that gateway. */
export class RemoteAgent implements AgentLink {
  readonly remote = true;
  readonly rateSaturatedUntilMs = 0;
  profile: AgentProfile;
  /** `api:model` keys it serves, each with its context window (tokens; null: unknown). */
  models: Map<string, number | null>;

  constructor(
    readonly agentId: string,
    public link: PeerLink,
    row: RemoteAgentRow,
  ) {
    this.profile = profileOf(row);
    this.models = modelKeys(row.models, row.contextWindows);
  }

  get routable(): boolean {
    return this.link.ready;
  }

  get isClosed(): boolean {
    return this.link.closed;
  }

  /** The other gateway holds the agent to its own stream limit (a stream over it is refused there and tried elsewhere). */
  get capacity(): number {
    return this.link.capacity;
  }

  get inFlight(): number {
    return this.link.inFlightFor(this.agentId);
  }

  openStream(head: RequestHead, sink: StreamSink): HubStream {
    return this.link.openStream(this.agentId, head, sink);
  }

  sendSettlement(statement: SettlementStatement): void {
    this.link.sendSettlement(this.agentId, statement);
  }

  /** The context window it reported for the model, tokens, or null when unknown. */
  contextTokens(api: ApiFamily, model: string): number | null {
    return this.models.get(`${api}:${model}`) ?? null;
  }
}

function profileOf(r: RemoteAgentRow): AgentProfile {
  const limits = r.rateMode === "expert" ? { rpm: r.rpmLimit, tpm: r.tpmLimit, concurrency: r.concurrencyLimit } : null;
  return { ownerId: r.ownerId, status: r.status, tier: r.tier, discountLane: r.discountLane, limits, createdAt: r.createdAt };
}

/** The `api:model` keys of an agent's `provider:model` list, with the context window its holder wrote for each. */
function modelKeys(models: readonly string[], windows: Record<string, unknown>): Map<string, number | null> {
  const keys = new Map<string, number | null>();
  for (const m of models) {
    const i = m.indexOf(":");
    const provider = m.slice(0, i);
    if (i <= 0 || !(PROVIDERS as readonly string[]).includes(provider)) continue;
    const window = windows[m];
    keys.set(
      `${apiFamilyOf(provider as Provider)}:${m.slice(i + 1)}`,
      typeof window === "number" && Number.isSafeInteger(window) && window > 0 ? window : null,
    );
  }
  return keys;
}

export interface PeersOptions {
  db: Db;
  gatewayId: string;
  /** SPKI pin of this gateway's TLS key. */
  pin: string;
  /** Windows and stream limit of each link end (the tunnel's). */
  settings: Settings;
  registry: AgentRegistry;
  log: Logger;
}

export class Peers {
  readonly #secret = randomBytes(32).toString("base64url");
  readonly #links = new Map<string, PeerLink>();
  readonly #agents = new Map<string, RemoteAgent>();
  readonly #sessions = new Set<PeerSession>();
  #renewTimer: ReturnType<typeof setInterval> | null = null;
  #refreshTimer: ReturnType<typeof setInterval> | null = null;
  #refreshing = false;
  #url = "";

  constructor(private readonly o: PeersOptions) {}

  /** Announces where the others dial this gateway (`https://host:port` of its agent listener) and starts reading theirs. */
  async start(origin: string): Promise<void> {
    this.#url = `${origin.replace(/^https:/, "wss:")}${PEER_PATH}`;
    await this.#announce();
    await this.refresh();
    this.#renewTimer = setInterval(
      () => void this.#announce().catch((error: unknown) => this.o.log.warn("peers.announce_failed", { error })),
      PEER_RENEW_INTERVAL_MS,
    );
    this.#refreshTimer = setInterval(() => void this.refresh(), PEER_REFRESH_INTERVAL_MS);
    this.#renewTimer.unref();
    this.#refreshTimer.unref();
  }

  #announce(): Promise<void> {
    return announcePeer(this.o.db, { gatewayId: this.o.gatewayId, url: this.#url, pin: this.o.pin, secret: this.#secret });
  }

  /** Reads the other gateways and their agents again; links to new gateways are dialled, to gone ones closed. */
  async refresh(): Promise<void> {
    if (this.#refreshing) return;
    this.#refreshing = true;
    try {
      const { peers, agents } = await readPeers(this.o.db, this.o.gatewayId);
      this.#apply(peers, agents);
    } catch (error) {
      this.o.log.warn("peers.refresh_failed", { error });
    } finally {
      this.#refreshing = false;
    }
  }

  #apply(peers: PeerRow[], rows: RemoteAgentRow[]): void {
    const live = new Map(peers.map((p) => [p.gatewayId, p]));
    for (const [id, link] of this.#links) {
      const row = live.get(id);
      // Gone, or restarted with another address, key or secret.
      if (!row || row.url !== link.row.url || row.pin !== link.row.pin || row.secret !== link.row.secret) {
        link.close();
        this.#links.delete(id);
      }
    }
    for (const row of peers) {
      let link = this.#links.get(row.gatewayId);
      if (!link) this.#links.set(row.gatewayId, (link = new PeerLink(row, this.o.gatewayId, this.o.settings, this.o.log)));
      void link.connect();
    }
    const seen = new Set<string>();
    for (const row of rows) {
      const link = this.#links.get(row.gatewayId);
      // An agent connected here is routed to here (its presence row may lag a moment behind).
      if (!link || this.o.registry.get(row.agentId)) continue;
      seen.add(row.agentId);
      const known = this.#agents.get(row.agentId);
      if (known) {
        known.link = link;
        known.profile = profileOf(row);
        known.models = modelKeys(row.models, row.contextWindows);
      } else this.#agents.set(row.agentId, new RemoteAgent(row.agentId, link, row));
    }
    for (const id of [...this.#agents.keys()]) if (!seen.has(id)) this.#agents.delete(id);
  }

  /** Agents on other gateways serving a model (none of them connected here). */
  serving(api: ApiFamily, model: string): RemoteAgent[] {
    const key = `${api}:${model}`;
    const out: RemoteAgent[] = [];
    for (const a of this.#agents.values()) if (a.models.has(key) && !this.o.registry.get(a.agentId)) out.push(a);
    return out;
  }

  /** Models agents on other gateways serve (through a link that is up), per API family. */
  models(api: ApiFamily): string[] {
    const prefix = `${api}:`;
    const out = new Set<string>();
    for (const a of this.#agents.values()) {
      if (!a.routable) continue;
      for (const k of a.models.keys()) if (k.startsWith(prefix)) out.add(k.slice(prefix.length));
    }
    return [...out];
  }

  /** Forwarded streams this gateway is piping for others now. */
  get pipedStreams(): number {
    let n = 0;
    for (const s of this.#sessions) n += s.streamCount;
    return n;
  }

  /**
   * Another gateway's link (`PEER_PATH` on the agent listener): refused with 401 before the WebSocket exists
   * unless it presents this gateway's secret.
   */
  upgrade(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (!presentsSecret(req, this.#secret)) {
      this.o.log.warn("peers.link_refused", { remoteIp: req.socket.remoteAddress, gateway: req.headers[PEER_GATEWAY_HEADER] });
      socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    const from = String(req.headers[PEER_GATEWAY_HEADER] ?? "unknown").slice(0, 64);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const session = new PeerSession(ws, this.o.settings, this.o.registry, from, this.o.log);
      this.#sessions.add(session);
      ws.once("close", () => this.#sessions.delete(session));
    });
  }

  async close(): Promise<void> {
    if (this.#renewTimer) clearInterval(this.#renewTimer);
    if (this.#refreshTimer) clearInterval(this.#refreshTimer);
    await withdrawPeer(this.o.db, this.o.gatewayId).catch((error: unknown) => this.o.log.warn("peers.withdraw_failed", { error }));
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
    this.#agents.clear();
  }
}
