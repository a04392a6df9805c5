/**
 * The agent's status, for `./wellspring-agent status` and container health checks, without opening a port:
 * the serving agent keeps `<data>/state/status.json` current (written whole, by rename), and the status command
 * reads it. A file not refreshed within STATUS_STALE_MS means the agent is not running.
 */

/** The agent rewrites its status at least this often, ms. */
export const STATUS_REFRESH_MS = 10_000;
/** A status older than this belongs to an agent that is no longer running, ms. */
export const STATUS_STALE_MS = 30_000;
/** Changes are written at most this often, ms (a busy agent changes its counters all the time). */
const STATUS_WRITE_MIN_INTERVAL_MS = 1_000;

export interface AgentStatus {
  pid: number;
  version: string;
  agentId: string;
  hubUrl: string;
  startedAt: string;
  updatedAt: string;
  /** Set when the agent stopped in order (a killed agent's status just stops being refreshed). */
  stoppedAt: string | null;
  /** Connected to the hub and authenticated (the tunnel is ready). */
  connected: boolean;
  sessionId: string | null;
  connectedSince: string | null;
  lastDisconnectedAt: string | null;
  lastCloseCode: number | null;
  /** Calls served since 00:00 UTC: forwarded to a provider, and of those, completed with the provider's whole answer. */
  today: { day: string; forwarded: number; completed: number };
  /** The official price version the agent holds. */
  priceVer: number | null;
  /** The https proxy provider calls go through (host:port, never its credentials), or null: direct. */
  proxy: string | null;
  /** What the hub last offered (CONTROL UPDATE_AVAILABLE). */
  update: { latestVersion: string | null; minimumVersion: string | null } | null;
  /**
   * The agent process's memory when this status was written (`Deno.memoryUsage()`), bytes: resident set, V8 heap
   * used and allocated, and memory outside the heap that V8 knows of (buffers). Absent from an older agent's file.
   */
  memory?: AgentMemory;
}

export interface AgentMemory {
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
}

/** This process's memory now (what the status file reports). */
export function memoryNow(): AgentMemory {
  const m = Deno.memoryUsage();
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external };
}

export const statusPath = (stateDir: string) => `${stateDir}/status.json`;

const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

export class StatusWriter {
  readonly #s: AgentStatus;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #lastWriteAt = 0;
  #writing = false;
  #dirty = false;
  readonly #refresh: ReturnType<typeof setInterval>;

  constructor(
    private readonly stateDir: string,
    init: { version: string; agentId: string; hubUrl: string; priceVer: number | null; proxy?: string | null },
    private readonly now: () => number = Date.now,
  ) {
    const t = new Date(now()).toISOString();
    this.#s = {
      pid: Deno.pid,
      version: init.version,
      agentId: init.agentId,
      hubUrl: init.hubUrl,
      startedAt: t,
      updatedAt: t,
      stoppedAt: null,
      connected: false,
      sessionId: null,
      connectedSince: null,
      lastDisconnectedAt: null,
      lastCloseCode: null,
      today: { day: utcDay(now()), forwarded: 0, completed: 0 },
      priceVer: init.priceVer,
      proxy: init.proxy ?? null,
      update: null,
    };
    this.#refresh = setInterval(() => this.#changed(), STATUS_REFRESH_MS);
    Deno.unrefTimer(this.#refresh);
    this.#changed();
  }

  get status(): Readonly<AgentStatus> {
    return this.#s;
  }

  connected(sessionId: string): void {
    this.#s.connected = true;
    this.#s.sessionId = sessionId;
    this.#s.connectedSince = new Date(this.now()).toISOString();
    this.#flushSoon(true);
  }

  disconnected(code: number): void {
    if (!this.#s.connected && this.#s.lastCloseCode === code) return;
    this.#s.connected = false;
    this.#s.sessionId = null;
    this.#s.connectedSince = null;
    this.#s.lastDisconnectedAt = new Date(this.now()).toISOString();
    this.#s.lastCloseCode = code;
    this.#flushSoon(true);
  }

  #today(): AgentStatus["today"] {
    const day = utcDay(this.now());
    if (this.#s.today.day !== day) this.#s.today = { day, forwarded: 0, completed: 0 };
    return this.#s.today;
  }

  forwarded(): void {
    this.#today().forwarded++;
    this.#changed();
  }

  completed(): void {
    this.#today().completed++;
    this.#changed();
  }

  prices(ver: number): void {
    this.#s.priceVer = ver;
    this.#changed();
  }

  offered(update: { latestVersion: string | null; minimumVersion: string | null }): void {
    this.#s.update = update;
    this.#flushSoon(true);
  }

  #changed(): void {
    this.#flushSoon(false);
  }

  #flushSoon(now: boolean): void {
    this.#dirty = true;
    if (this.#timer) {
      if (!now) return;
      clearTimeout(this.#timer);
    }
    const wait = now ? 0 : Math.max(0, this.#lastWriteAt + STATUS_WRITE_MIN_INTERVAL_MS - this.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#write();
    }, wait);
    Deno.unrefTimer(this.#timer);
  }

  async #write(): Promise<void> {
    if (this.#writing) {
      this.#flushSoon(false);
      return;
    }
    this.#writing = true;
    this.#dirty = false;
    this.#lastWriteAt = this.now();
    this.#today();
    this.#s.updatedAt = new Date(this.now()).toISOString();
    this.#s.memory = memoryNow();
    const path = statusPath(this.stateDir);
    try {
      await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(this.#s, null, 2) + "\n");
      await Deno.rename(`${path}.tmp`, path);
    } catch {
      /* the status is advisory; the next change writes it again */
    } finally {
      this.#writing = false;
      if (this.#dirty) this.#flushSoon(false);
    }
  }

  /** Writes the final state now (on exit). */
  async close(): Promise<void> {
    clearInterval(this.#refresh);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#s.connected = false;
    this.#s.stoppedAt = new Date(this.now()).toISOString();
    while (this.#writing) await new Promise((r) => setTimeout(r, 5));
    await this.#write();
  }
}

/** Reads the status file; null when there is none or it is not readable. */
export async function readStatus(stateDir: string): Promise<AgentStatus | null> {
  try {
    return JSON.parse(await Deno.readTextFile(statusPath(stateDir))) as AgentStatus;
  } catch {
    return null;
  }
}

/** True while the agent that wrote `s` is running: it refreshed its status recently and did not stop. */
export function isFresh(s: AgentStatus, now = Date.now()): boolean {
  return !s.stoppedAt && now - Date.parse(s.updatedAt) < STATUS_STALE_MS;
}
