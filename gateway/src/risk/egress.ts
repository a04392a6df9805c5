/**
 * Detector: egress and IP risk. When an agent's tunnel is ready the hub sends it CONTROL EGRESS_PROBE with a
 * random nonce; the agent calls the hub's echo endpoint (EGRESS_ECHO_PATH, agent listener) with the nonce through
 * the HTTP client its provider calls use — so through whatever proxy that client is configured with — and answers
 * with the address the echo told it. The hub compares three addresses: the tunnel's, the one its echo saw, and the
 * agent's report. Provider calls leaving from another address than the tunnel (a proxy in between), or a report
 * that is not what the echo saw, raise `egress_mismatch` on the agent. An echo address shared by more owners than
 * `ownersPerAddressMax` within EGRESS_SHARE_WINDOW_MS (a proxy farm) raises `shared_egress` on the owner over it.
 * Owners seen behind one echo address are linked accounts (`account_links.ts`, kind `shared_egress`).
 * The probes live in the database (`egress_probes`), so the echo may land on any gateway of the hub.
 */
import { randomBytes } from "node:crypto";
import type { Db } from "@wellspring/db/core";
import type { EgressProbeAnswer } from "@wellspring/protocol";
import type { Logger } from "../log.ts";
import { LINK_PEERS_PER_SIGNAL_MAX, recordLinks, viaPrisma } from "./account_links.ts";
import { raiseRiskFlag, type RaisedFlag, type RiskEvidence } from "./flags.ts";

export const EGRESS_MISMATCH = "egress_mismatch";
export const SHARED_EGRESS = "shared_egress";
/** Owner accounts that may share one egress address before each further one is flagged. */
export const EGRESS_OWNERS_PER_ADDRESS_MAX_DEFAULT = 5;
/** How far back probes count towards an address's owners, ms. */
export const EGRESS_SHARE_WINDOW_MS = 7 * 24 * 60 * 60 * 1000;
/** An echo is accepted for a probe this long after it was sent, ms. */
export const EGRESS_ECHO_WINDOW_MS = 5 * 60 * 1000;
/**
 * How long a probe row is kept, ms: the share window (the longest any check looks back) and a day more, so a
 * count over the window never misses a row the prune took.
 */
export const EGRESS_PROBE_RETENTION_MS = EGRESS_SHARE_WINDOW_MS + 24 * 60 * 60 * 1000;
/** How often each gateway deletes probes older than the retention, ms. */
export const EGRESS_PRUNE_INTERVAL_MS = 60 * 60 * 1000;
/** Rows one prune statement deletes, at most (it repeats until fewer are left): short locks on a large backlog. */
export const EGRESS_PRUNE_BATCH_ROWS = 5_000;
/** Owner ids a shared-egress flag lists, the first seen. */
export const EGRESS_EVIDENCE_OWNERS_MAX = 32;
/** Random bytes in a probe nonce. */
const NONCE_BYTES = 24;

export type EgressProblem = "echo_differs_from_tunnel" | "report_differs_from_echo" | "echo_not_seen" | "echo_failed";

export interface EgressMismatchEvidence extends RiskEvidence {
  agentId: string;
  sessionId: string;
  tunnelAddress: string;
  echoAddress: string | null;
  reportedAddress: string | null;
  problems: EgressProblem[];
  at: string;
}

export interface SharedEgressEvidence extends RiskEvidence {
  address: string;
  /** Distinct owners seen behind it in the window (at most EGRESS_EVIDENCE_OWNERS_MAX listed). */
  ownerCount: number;
  owners: string[];
  ownersPerAddressMax: number;
  windowMs: number;
}

/** `::ffff:1.2.3.4` (an IPv4 client on a dual-stack socket) as `1.2.3.4`, so the same peer compares equal. */
export function plainAddress(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice("::ffff:".length) : address;
}

export interface EgressProbeOptions {
  db: Db;
  log: Logger;
  ownersPerAddressMax?: number;
}

interface ProbeRow {
  agent_id: string;
  owner_id: string;
  session_id: string;
  tunnel_address: string;
  echo_address: string | null;
}

export class EgressProbes {
  readonly ownersPerAddressMax: number;

  constructor(private readonly o: EgressProbeOptions) {
    this.ownersPerAddressMax = o.ownersPerAddressMax ?? EGRESS_OWNERS_PER_ADDRESS_MAX_DEFAULT;
  }

  /** Records a new probe of this session; the nonce to send the agent. */
  async start(probe: { agentId: string; ownerId: string; sessionId: string; tunnelAddress: string }): Promise<string> {
    const nonce = randomBytes(NONCE_BYTES).toString("base64url");
    await this.o.db.$executeRaw`
      INSERT INTO egress_probes (nonce, agent_id, owner_id, session_id, tunnel_address, created_at)
      VALUES (${nonce}, ${probe.agentId}, ${probe.ownerId}, ${probe.sessionId}, ${plainAddress(probe.tunnelAddress)}, now())`;
    return nonce;
  }

  /** The echo endpoint saw `address` for `nonce`: kept once, for a recent probe. False for an unknown nonce. */
  async echo(nonce: string, address: string): Promise<boolean> {
    const windowS = EGRESS_ECHO_WINDOW_MS / 1000;
    const n = await this.o.db.$executeRaw`
      UPDATE egress_probes SET echo_address = ${plainAddress(address)}, echoed_at = now()
      WHERE nonce = ${nonce} AND echo_address IS NULL AND created_at > now() - make_interval(secs => ${windowS})`;
    return n === 1;
  }

  /** The agent's answer: compares the three addresses and counts the echo address's owners; raises what it finds. */
  async answer(agentId: string, answer: EgressProbeAnswer): Promise<RaisedFlag[]> {
    const rows = await this.o.db.$queryRaw<ProbeRow[]>`
      UPDATE egress_probes SET reported_address = ${answer.address === null ? null : plainAddress(answer.address)}, answered_at = now()
      WHERE nonce = ${answer.nonce} AND agent_id = ${agentId} AND answered_at IS NULL
      RETURNING agent_id, owner_id, session_id, tunnel_address, echo_address`;
    const probe = rows[0];
    if (!probe) {
      this.o.log.warn("risk.egress_answer_unknown", { agentId });
      return [];
    }
    const reported = answer.address === null ? null : plainAddress(answer.address);
    const problems: EgressProblem[] = [];
    if (reported === null) problems.push("echo_failed");
    else if (probe.echo_address === null) problems.push("echo_not_seen");
    else if (reported !== probe.echo_address) problems.push("report_differs_from_echo");
    if (probe.echo_address !== null && probe.echo_address !== probe.tunnel_address) problems.push("echo_differs_from_tunnel");
    const raised: RaisedFlag[] = [];
    if (problems.length > 0) {
      const evidence: EgressMismatchEvidence = {
        agentId,
        sessionId: probe.session_id,
        tunnelAddress: probe.tunnel_address,
        echoAddress: probe.echo_address,
        reportedAddress: reported,
        problems,
        at: new Date().toISOString(),
      };
      // An echo that failed may be a firewall; an address that differs is what a proxy looks like.
      const severity = problems.every((p) => p === "echo_failed") ? 1 : 2;
      raised.push(await raiseRiskFlag(this.o.db, { kind: EGRESS_MISMATCH, subject: `agent:${agentId}`, severity, evidence }));
    }
    if (probe.echo_address !== null) {
      const owners = await this.#ownersBehind(probe.echo_address);
      // Owners whose agents leave from one address are linked accounts (the self-dealing detector reads them).
      await recordLinks(viaPrisma(this.o.db), probe.owner_id, owners.slice(0, LINK_PEERS_PER_SIGNAL_MAX), SHARED_EGRESS);
      const shared = this.#sharedBeyondLimit(probe.echo_address, owners, probe.owner_id);
      if (shared) raised.push(await raiseRiskFlag(this.o.db, { kind: SHARED_EGRESS, subject: `user:${probe.owner_id}`, severity: 2, evidence: shared }));
    }
    return raised;
  }

  /** Deletes probes created more than EGRESS_PROBE_RETENTION_MS before `nowMs` (UTC ms); the number deleted. */
  async prune(nowMs: number = Date.now()): Promise<number> {
    const cutoff = new Date(nowMs - EGRESS_PROBE_RETENTION_MS);
    let deleted = 0;
    for (;;) {
      const n = await this.o.db.$executeRaw`
        DELETE FROM egress_probes WHERE nonce IN (
          SELECT nonce FROM egress_probes WHERE created_at < ${cutoff} LIMIT ${EGRESS_PRUNE_BATCH_ROWS})`;
      deleted += n;
      if (n < EGRESS_PRUNE_BATCH_ROWS) break;
    }
    if (deleted > 0) this.o.log.info("risk.egress_pruned", { deleted, retentionMs: EGRESS_PROBE_RETENTION_MS });
    return deleted;
  }

  /** The owners seen behind `address` in the window, in the order they were first seen. */
  async #ownersBehind(address: string): Promise<string[]> {
    const windowS = EGRESS_SHARE_WINDOW_MS / 1000;
    const owners = await this.o.db.$queryRaw<{ owner_id: string }[]>`
      SELECT owner_id FROM egress_probes
      WHERE echo_address = ${address} AND echoed_at > now() - make_interval(secs => ${windowS})
      GROUP BY owner_id ORDER BY min(echoed_at), owner_id`;
    return owners.map((o) => o.owner_id);
  }

  /**
   * Evidence when `address` has more owners than allowed in the window and `ownerId` is one of those beyond the
   * limit (`ids` in the order first seen: the first `ownersPerAddressMax` are within it).
   */
  #sharedBeyondLimit(address: string, ids: string[], ownerId: string): SharedEgressEvidence | null {
    if (ids.length <= this.ownersPerAddressMax || ids.indexOf(ownerId) < this.ownersPerAddressMax) return null;
    return {
      address,
      ownerCount: ids.length,
      owners: ids.slice(0, EGRESS_EVIDENCE_OWNERS_MAX),
      ownersPerAddressMax: this.ownersPerAddressMax,
      windowMs: EGRESS_SHARE_WINDOW_MS,
    };
  }
}
