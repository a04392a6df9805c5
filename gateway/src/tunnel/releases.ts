/**
 * Agent releases on the tunnel's side: serving the published files on the agent listener, announcing the policy
 * to agents (CONTROL UPDATE_AVAILABLE) and refusing agents below the minimum (close UPDATE_REQUIRED).
 * Publishing releases and setting the policy are operations (ops/releases.ts).
 *
 * The hub is not trusted by agents for code: they verify every release against the keys pinned in their own
 * install, so a compromised hub can withhold updates but not push one (docs/ARCHITECTURE.md).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { CloseCode, ControlKind, encodeControl, GoAwayCode, jsonBytes, PROTOCOL_VERSION, RELEASE_FILES, type UpdateAvailable } from "@wellspring/protocol";
import type { Db } from "@wellspring/db/core";
import type { Logger } from "../log.ts";
import { versionRefusal, type ReleasePolicy } from "../ops/releases.ts";
import type { AgentConnection } from "./agent_connection.ts";

export const RELEASES_PATH = "/agent/v1/releases/";
/** How long the release policy is cached between hub events (a missed event costs at most this), ms. */
const POLICY_TTL_MS = 60_000;
/** Releases whose files are kept in memory for downloads (the latest, and the one before while agents move). */
const CACHED_RELEASES_MAX = 2;

interface ReleaseFiles {
  manifest: Buffer;
  signatures: Buffer;
  bundle: Buffer;
}

export class AgentReleases {
  #policy: { at: number; value: ReleasePolicy } | null = null;
  readonly #files = new Map<string, ReleaseFiles>();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  async policy(): Promise<ReleasePolicy> {
    if (this.#policy && this.now() - this.#policy.at < POLICY_TTL_MS) return this.#policy.value;
    const row = await this.db.agentReleasePolicy.findUnique({ where: { id: 1 } });
    const value = { latestVersion: row?.latestVersion ?? null, minimumVersion: row?.minimumVersion ?? null };
    this.#policy = { at: this.now(), value };
    return value;
  }

  invalidate(): void {
    this.#policy = null;
  }

  /** The UPDATE_AVAILABLE body for the current policy. */
  async offer(): Promise<UpdateAvailable> {
    const p = await this.policy();
    return { latestVersion: p.latestVersion, minimumVersion: p.minimumVersion, protocolVersion: PROTOCOL_VERSION };
  }

  /**
   * Admission by version (before the identity check): a refusal records the agent's version and the time on its
   * row, which the owner's agent page turns into a message.
   */
  async admit(conn: AgentConnection): Promise<{ admitted: true } | { admitted: false; code: number; reason: string }> {
    let policy: ReleasePolicy;
    try {
      policy = await this.policy();
    } catch (error) {
      // The identity check that follows needs the database too and says what happens; the version waits.
      this.log.warn("tunnel.version_check_failed", { agentId: conn.agentId, error });
      return { admitted: true };
    }
    const refusal = versionRefusal(conn.agentVersion, policy);
    if (!refusal) return { admitted: true };
    this.log.warn("tunnel.version_refused", { agentId: conn.agentId, agentVersion: conn.agentVersion, remoteIp: conn.remoteIp });
    await this.db.agent
      .update({ where: { id: conn.agentId! }, data: { version: conn.agentVersion?.slice(0, 64) ?? null, versionRefusedAt: new Date(this.now()) } })
      .catch((error: unknown) => this.log.warn("tunnel.version_refusal_not_recorded", { agentId: conn.agentId, error }));
    return { admitted: false, code: CloseCode.UPDATE_REQUIRED, reason: refusal };
  }

  /** Tells connected agents what to run; drains those now below the minimum (they update, then reconnect). */
  async announce(to: readonly AgentConnection[]): Promise<void> {
    const body = await this.offer();
    if (!body.latestVersion && !body.minimumVersion) return;
    const policy = await this.policy();
    for (const conn of to) {
      conn.send(encodeControl(ControlKind.UPDATE_AVAILABLE, jsonBytes(body)));
      const refusal = versionRefusal(conn.agentVersion, policy);
      if (refusal) conn.drain(GoAwayCode.UPDATE_REQUIRED, refusal);
    }
  }

  async #releaseFiles(version: string): Promise<ReleaseFiles | null> {
    const cached = this.#files.get(version);
    if (cached) return cached;
    const row = await this.db.agentRelease.findUnique({ where: { version } });
    if (!row) return null;
    const files = { manifest: Buffer.from(row.manifest, "utf8"), signatures: Buffer.from(row.signatures, "utf8"), bundle: Buffer.from(row.bundle) };
    if (this.#files.size >= CACHED_RELEASES_MAX) this.#files.delete(this.#files.keys().next().value!);
    this.#files.set(version, files);
    return files;
  }

  /**
   * `GET /agent/v1/releases/latest` (the policy as UPDATE_AVAILABLE's body) and
   * `GET /agent/v1/releases/<version>/{manifest.json,manifest.sig,agent.js}`. False when `path` is not a release path.
   */
  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (!path.startsWith(RELEASES_PATH)) return false;
    const notFound = (message: string) =>
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "not_found", message } }));
    if (req.method !== "GET") {
      res.writeHead(405, { "content-type": "application/json", allow: "GET" }).end('{"error":{"code":"method_not_allowed","message":"Use GET."}}');
      return true;
    }
    const rest = path.slice(RELEASES_PATH.length);
    if (rest === "latest") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(await this.offer()));
      return true;
    }
    const m = /^(\d{1,6}\.\d{1,6}\.\d{1,6})\/(manifest\.json|manifest\.sig|agent\.js)$/.exec(rest);
    if (!m) {
      notFound("Unknown release path.");
      return true;
    }
    const files = await this.#releaseFiles(m[1]!);
    if (!files) {
      notFound(`No release ${m[1]} is published.`);
      return true;
    }
    const body = m[2] === RELEASE_FILES.manifest ? files.manifest : m[2] === RELEASE_FILES.signatures ? files.signatures : files.bundle;
    const type = m[2] === RELEASE_FILES.bundle ? "text/javascript" : "application/json";
    // A version names one set of bytes forever (the table refuses updates), so downloads may be cached.
    res.writeHead(200, { "content-type": type, "content-length": String(body.length), "cache-control": "public, max-age=31536000, immutable" }).end(body);
    return true;
  }
}
