/**
 * Detector: self-dealing. A request served by an agent whose owner is the user (`same_account`) or linked to the
 * user (`account_links.ts`: shared device, address, payout destination, redemption batch, key, egress) earns the
 * owner money the owner paid in themselves — the shape of farming earnings. Each such settlement raises (or adds
 * to) one open `linked_accounts` flag on the owner, with the link kinds and counts (no content), and — with
 * RISK_LINKED_EARNINGS=hold, the default — holds the request's earning (`earning_holds.ts`) until an admin
 * reviews the flag; with `flag` it only flags.
 *
 * On the settlement path it costs a cached map lookup (`LinkedAccounts`); the flag and the hold are written off
 * the request's path, after the settlement is.
 */
import type { Db } from "@wellspring/db/core";
import type { ServedRequest } from "../billing/meter.ts";
import type { LinkedAccounts, LinkKind } from "./account_links.ts";
import { holdEarning } from "./earning_holds.ts";
import { appendDistinct, evidenceStrings, raiseRiskFlag, type RiskEvidence } from "./flags.ts";

export const LINKED_ACCOUNTS = "linked_accounts";
/** What happens to the earning of a request between linked accounts (RISK_LINKED_EARNINGS). */
export const LINKED_EARNINGS_MODES = ["hold", "flag"] as const;
export type LinkedEarningsMode = (typeof LINKED_EARNINGS_MODES)[number];
export const LINKED_EARNINGS_MODE_DEFAULT: LinkedEarningsMode = "hold";
/** Request ids a flag keeps, the most recent. */
export const LINKED_EVIDENCE_REQUESTS_MAX = 20;
/** Linked users a flag lists, the first seen. */
export const LINKED_EVIDENCE_USERS_MAX = 16;

export interface LinkedAccountsEvidence extends RiskEvidence {
  ownerId: string;
  /** Users whose requests the owner's agents served while linked (the first LINKED_EVIDENCE_USERS_MAX). */
  users: string[];
  /** Every link kind seen while the flag was open. */
  kinds: LinkKind[];
  requests: number;
  requestIds: string[];
  /** Earnings held by this flag, µ$ (decimal string); "0" with RISK_LINKED_EARNINGS=flag. */
  heldMicros: string;
  mode: LinkedEarningsMode;
  /** The latest request: who, through which agent, and each link kind with how often it was seen. */
  latest: { requestId: string; userId: string; agentId: string | null; links: Partial<Record<LinkKind, number>>; at: string };
}

function mergeEvidence(previous: RiskEvidence, next: RiskEvidence): RiskEvidence {
  const n = next as LinkedAccountsEvidence;
  const requests = typeof previous.requests === "number" ? previous.requests : 0;
  const held = BigInt(typeof previous.heldMicros === "string" ? previous.heldMicros : "0") + BigInt(n.heldMicros);
  return {
    ...n,
    users: appendDistinct(evidenceStrings(previous.users), n.users, LINKED_EVIDENCE_USERS_MAX),
    kinds: appendDistinct(evidenceStrings(previous.kinds), n.kinds, Number.MAX_SAFE_INTEGER) as LinkKind[],
    requests: requests + 1,
    requestIds: [...evidenceStrings(previous.requestIds), ...n.requestIds].slice(-LINKED_EVIDENCE_REQUESTS_MAX),
    heldMicros: held.toString(),
  } satisfies LinkedAccountsEvidence;
}

export class SelfDealingDetector {
  constructor(
    private readonly db: Db,
    private readonly links: LinkedAccounts,
    private readonly mode: LinkedEarningsMode = LINKED_EARNINGS_MODE_DEFAULT,
  ) {}

  /** The link kinds between a user and an owner (with counts), or null when they are not linked. */
  async linkBetween(userId: string, ownerId: string): Promise<Partial<Record<LinkKind, number>> | null> {
    if (userId === ownerId) return { same_account: 1 };
    const kinds = (await this.links.of(userId)).get(ownerId);
    return kinds ? Object.fromEntries(kinds) : null;
  }

  /**
   * Checks a settled request; when its user and owner are linked, raises the owner's flag and (mode `hold`)
   * holds the earning once the settlement is written. Returns whether it was linked.
   */
  async check(served: ServedRequest, written: Promise<unknown>): Promise<boolean> {
    // Taken up at once: a failed write is an answer here, not an unhandled rejection while the links are read.
    const writtenOk = written.then(
      () => true,
      () => false,
    );
    const links = await this.linkBetween(served.userId, served.ownerId);
    if (!links) return false;
    const settled = await writtenOk;
    const held = settled && this.mode === "hold" ? served.earningMicros : 0n;
    const evidence: LinkedAccountsEvidence = {
      ownerId: served.ownerId,
      users: [served.userId],
      kinds: Object.keys(links) as LinkKind[],
      requests: 1,
      requestIds: [served.requestId],
      heldMicros: held > 0n ? held.toString() : "0",
      mode: this.mode,
      latest: { requestId: served.requestId, userId: served.userId, agentId: served.agentId, links, at: new Date().toISOString() },
    };
    await this.db.$transaction(async (tx) => {
      const flag = await raiseRiskFlag(tx, { kind: LINKED_ACCOUNTS, subject: `user:${served.ownerId}`, severity: 2, evidence, merge: mergeEvidence });
      if (held > 0n) {
        await holdEarning(tx, {
          ownerId: served.ownerId,
          agentId: served.agentId,
          requestId: served.requestId,
          flagId: flag.id,
          reason: LINKED_ACCOUNTS,
          amountMicros: held,
        });
      }
    });
    return true;
  }
}
