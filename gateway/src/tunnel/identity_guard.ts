/**
 * One live connection per agent identity, across every gateway sharing the database. Each authenticated
 * connection asks `admit` before it is welcomed; a second connection while the first is alive is refused
 * (close DUPLICATE_IDENTITY) and recorded as a risk flag, so the live agent keeps serving and its streams
 * are never cut by the copy. How "alive" is judged: `judgeHolder` (presence.ts).
 */
import { CloseCode } from "@wellspring/protocol";
import { publishHubEvent, type Db } from "@wellspring/db/core";
import type { Logger } from "../log.ts";
import { raiseDuplicateIdentity } from "../risk/duplicate_identity.ts";
import type { AgentConnection } from "./agent_connection.ts";
import { claimPresence, judgeHolder, readHolder, releaseGatewayPresence, releasePresence, renewPresence } from "./presence.ts";

/** Reads and compare-and-sets before a connection gives up on a holder that keeps changing (a crowd of copies). */
const CLAIM_ATTEMPTS_MAX = 3;

export interface IdentityGuardOptions {
  db: Db;
  gatewayId: string;
  /** A holder on this gateway must answer a ping within this time to keep the agent, ms. */
  probeTimeoutMs: number;
  /** How long a claim or heartbeat keeps the agent without another, ms (the gateway's heartbeat timeout). */
  presenceTtlMs: number;
  log: Logger;
}

export type Admission = { admitted: true } | { admitted: false; code: number; reason: string };

export class IdentityGuard {
  /** Authenticated connections on this gateway, by session id (welcomed or being admitted). */
  readonly #local = new Map<string, AgentConnection>();

  constructor(private readonly o: IdentityGuardOptions) {}

  /** Decides whether an authenticated connection may serve its agent; on yes, it holds the agent's presence. */
  async admit(conn: AgentConnection, previousSessionId: string | null): Promise<Admission> {
    const agentId = conn.agentId!;
    const { db, gatewayId, log } = this.o;
    this.#local.set(conn.sessionId, conn);
    try {
      for (let attempt = 0; attempt < CLAIM_ATTEMPTS_MAX; attempt++) {
        const holder = await readHolder(db, agentId);
        if (!holder) return this.#refuse(conn, CloseCode.UNKNOWN_AGENT, "unknown agent");
        const verdict = judgeHolder(holder, { gatewayId, previousSessionId, isLocalSession: (s) => this.#isLive(s) });
        let expectHolder: string | null;
        let requireExpired = false;
        if (verdict.action === "refuse") {
          return this.#refuseDuplicate(conn, holder);
        } else if (verdict.action === "probe") {
          const old = this.#local.get(verdict.sessionId)!;
          if (await old.probe(this.o.probeTimeoutMs)) return this.#refuseDuplicate(conn, holder);
          log.warn("tunnel.presence_probe_unanswered", {
            agentId,
            sessionId: old.sessionId,
            newSessionId: conn.sessionId,
            probeTimeoutMs: this.o.probeTimeoutMs,
          });
          old.close(CloseCode.HEARTBEAT_TIMEOUT, `did not answer a presence probe within ${this.o.probeTimeoutMs} ms`);
          expectHolder = verdict.sessionId;
        } else {
          expectHolder = verdict.expectHolder;
          requireExpired = verdict.requireExpired;
          // The agent itself left that session: close it here at once rather than when its heartbeat runs out.
          if (expectHolder && expectHolder === previousSessionId) this.#local.get(expectHolder)?.close(CloseCode.REPLACED, "the agent reconnected");
        }
        if (conn.isClosed) return { admitted: false, code: CloseCode.GOING_AWAY, reason: "closed during admission" };
        const claimed = await claimPresence(db, {
          agentId,
          sessionId: conn.sessionId,
          gatewayId,
          address: conn.remoteIp,
          ttlMs: this.o.presenceTtlMs,
          expectHolder,
          requireExpired,
        });
        if (!claimed) continue; // the holder changed meanwhile: judge again
        if (conn.isClosed) {
          await releasePresence(db, agentId, conn.sessionId);
          return { admitted: false, code: CloseCode.GOING_AWAY, reason: "closed during admission" };
        }
        if (holder.sessionId && holder.gatewayId !== gatewayId) {
          // The gateway that held the agent closes its stale session on this event (server.ts, agent_changed).
          await publishHubEvent(db, { kind: "agent_changed", agentId });
        }
        return { admitted: true };
      }
      return this.#refuse(conn, CloseCode.DUPLICATE_IDENTITY, "other connections with this agent identity keep taking its place");
    } catch (error) {
      log.error("tunnel.presence_failed", { agentId, sessionId: conn.sessionId, error });
      return this.#refuse(conn, CloseCode.INTERNAL, "cannot record the agent's presence; try again");
    }
  }

  #isLive(sessionId: string): boolean {
    const conn = this.#local.get(sessionId);
    return conn !== undefined && !conn.isClosed;
  }

  #refuse(conn: AgentConnection, code: number, reason: string): Admission {
    this.#local.delete(conn.sessionId);
    return { admitted: false, code, reason };
  }

  #refuseDuplicate(conn: AgentConnection, holder: { sessionId: string | null; gatewayId: string | null; address: string | null }): Admission {
    const agentId = conn.agentId!;
    const { db, gatewayId, log } = this.o;
    log.warn("tunnel.duplicate_refused", {
      agentId,
      sessionId: conn.sessionId,
      remoteIp: conn.remoteIp,
      liveSessionId: holder.sessionId,
      liveGatewayId: holder.gatewayId,
    });
    void raiseDuplicateIdentity(db, {
      agentId,
      live: { sessionId: holder.sessionId!, gatewayId: holder.gatewayId, address: holder.address },
      refused: { sessionId: conn.sessionId, gatewayId, address: conn.remoteIp, at: new Date() },
    }).catch((error: unknown) => log.error("risk.flag_failed", { agentId, kind: "duplicate_agent_identity", error }));
    return this.#refuse(conn, CloseCode.DUPLICATE_IDENTITY, "another connection with this agent identity is live; only one may run");
  }

  /** A heartbeat answered: extend the presence; a session another one replaced is closed. */
  renew(conn: AgentConnection): void {
    const agentId = conn.agentId!;
    void renewPresence(this.o.db, agentId, conn.sessionId, this.o.presenceTtlMs).then(
      (held) => {
        if (!held && !conn.isClosed) conn.close(CloseCode.REPLACED, "another connection of this agent took its place");
      },
      (error: unknown) => this.o.log.warn("tunnel.presence_failed", { agentId, sessionId: conn.sessionId, error }),
    );
  }

  /** The connection closed: the agent is offline unless another session holds it. */
  forget(conn: AgentConnection): void {
    this.#local.delete(conn.sessionId);
    if (!conn.agentId) return; // never authenticated, so never held the agent
    void releasePresence(this.o.db, conn.agentId, conn.sessionId).catch((error: unknown) =>
      this.o.log.warn("tunnel.presence_failed", { agentId: conn.agentId, sessionId: conn.sessionId, error }),
    );
  }

  /** On shutdown: every agent this gateway holds is offline now, so its reconnect elsewhere is admitted at once. */
  async releaseAll(): Promise<void> {
    this.#local.clear();
    await releaseGatewayPresence(this.o.db, this.o.gatewayId);
  }
}
