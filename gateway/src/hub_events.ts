/**
 * Listens on the hub event channel (PostgreSQL LISTEN on a dedicated connection) and hands each event to
 * the gateway. The connection is re-made after an error with a growing delay; after a reconnect every
 * cache is dropped and the price table re-pushed, since events sent meanwhile were missed.
 */
import pg from "pg";
import { CloseCode } from "@wellspring/protocol";
import { HUB_EVENTS_CHANNEL, parseHubEvent, type Db, type HubEvent } from "@wellspring/db/core";
import type { Logger } from "./log.ts";
import type { KeyVerifier } from "./api/keys.ts";
import type { KeyFilter, KeyFilterLoader } from "./api/key_filter.ts";
import type { PriceBook, Tariffs } from "./billing/prices.ts";
import { closeRefusedAgent, type AgentConnection } from "./tunnel/agent_connection.ts";
import type { AgentRegistry } from "./tunnel/registry.ts";
import type { AgentReleases } from "./tunnel/releases.ts";

/** What hub events change in a gateway. */
export interface HubEventTargets {
  db: Db;
  registry: AgentRegistry;
  prices: PriceBook;
  tariffs: Tariffs;
  keys: KeyVerifier;
  keyFilter: KeyFilter;
  keyFilterLoader: KeyFilterLoader;
  /** Sends the current price table to these agents. */
  pushPrices(to: readonly AgentConnection[]): Promise<void>;
  releases: AgentReleases;
  log: Logger;
}

/** How a gateway applies each hub event: caches dropped, agents told, profiles reloaded, tunnels closed. */
export function hubEventHandler(t: HubEventTargets): (event: HubEvent) => void {
  const { db, registry, prices, tariffs, keys, keyFilter, keyFilterLoader, releases, log } = t;
  return (event) => {
    switch (event.kind) {
      case "price_published":
        prices.invalidate();
        void t.pushPrices(registry.connections()).catch((error: unknown) => log.error("prices.push_failed", { error }));
        log.info("prices.published", { ver: event.ver });
        return;
      case "tariffs_changed":
        tariffs.invalidate();
        return;
      case "agent_changed": {
        const conn = registry.get(event.agentId);
        if (!conn) return;
        void db.agent.findUnique({ where: { id: event.agentId } }).then(
          (agent) => {
            if (!agent) return;
            registry.setProfile(agent);
            if (agent.status === "revoked" || agent.status === "suspended") closeRefusedAgent(conn, agent.status);
            // Another gateway admitted a new session of this agent (it reconnected there): this one is stale.
            else if (agent.connectedSession !== conn.sessionId) conn.close(CloseCode.REPLACED, "the agent reconnected elsewhere");
          },
          (error: unknown) => log.warn("agents.reload_failed", { agentId: event.agentId, error }),
        );
        return;
      }
      case "key_created":
        keys.keyCreated(event.hashPrefix);
        if (keyFilter.wantsRebuild) void keyFilterLoader.rebuild().catch(() => {});
        return;
      case "key_changed":
        keys.keyChanged(event.keyId);
        return;
      case "user_changed":
        keys.userChanged(event.userId);
        return;
      case "releases_changed":
        releases.invalidate();
        void releases.announce(registry.connections()).catch((error: unknown) => log.error("releases.announce_failed", { error }));
        return;
    }
  };
}

/** Delay before re-making a lost LISTEN connection: doubles from the first to the last, ms. */
const RECONNECT_DELAY_FIRST_MS = 250;
const RECONNECT_DELAY_MAX_MS = 10_000;

export class HubEventListener {
  #client: pg.Client | null = null;
  #closed = false;
  #delay = RECONNECT_DELAY_FIRST_MS;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly databaseUrl: string,
    private readonly onEvent: (event: HubEvent) => void,
    /** Called after a reconnect: events may have been missed. */
    private readonly onResync: () => void,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.#connect(false);
  }

  async #connect(resync: boolean): Promise<void> {
    const client = new pg.Client({ connectionString: this.databaseUrl });
    client.on("error", (error) => {
      this.log.warn("events.connection_error", { error });
      this.#retry(client);
    });
    client.on("end", () => this.#retry(client));
    client.on("notification", (msg) => {
      if (msg.channel !== HUB_EVENTS_CHANNEL) return;
      const event = parseHubEvent(msg.payload);
      if (event) this.onEvent(event);
      else this.log.warn("events.unreadable", { channel: msg.channel });
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${HUB_EVENTS_CHANNEL}`);
    } catch (error) {
      client.removeAllListeners("end");
      void client.end().catch(() => {});
      throw error;
    }
    this.#client = client;
    this.#delay = RECONNECT_DELAY_FIRST_MS;
    if (resync) this.onResync();
  }

  /** The LISTEN connection failed or ended: drop it and connect again later. */
  #retry(client: pg.Client): void {
    if (this.#closed || this.#client !== client) return;
    this.#client = null;
    client.removeAllListeners("end");
    void client.end().catch(() => {});
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    const delay = this.#delay;
    this.#delay = Math.min(this.#delay * 2, RECONNECT_DELAY_MAX_MS);
    this.#timer = setTimeout(() => {
      if (this.#closed) return;
      void this.#connect(true).catch((error: unknown) => {
        this.log.warn("events.reconnect_failed", { error, retryInMs: this.#delay });
        this.#scheduleReconnect();
      });
    }, delay);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = null;
    await client?.end().catch(() => {});
  }
}
