/**
 * Detector: one provider key behind several agents. Agents report non-reversible fingerprints of the provider keys
 * they hold (INVENTORY `keyFingerprints`, HMAC-SHA256 under a fixed context: the same key gives the same fingerprint
 * everywhere). When an agent reports a fingerprint another agent also holds, the hub raises `key_fingerprint_reuse`
 * on the reporting agent's owner: severity 2 when another owner holds it (one key lent out under two accounts, the
 * shape of self-dealing and of resold keys), 1 when it is the same owner's other agent (often a second machine).
 * Owners sharing a key are also linked (`account_links.ts`, kind `key_fingerprint`).
 */
import type { Db } from "@wellspring/db/core";
import { recordLinks, viaPrisma } from "./account_links.ts";
import { raiseRiskFlag, type RaisedFlag, type RiskEvidence } from "./flags.ts";

export const KEY_FINGERPRINT_REUSE = "key_fingerprint_reuse";
/** Other agents a flag lists, the first found. */
export const KEY_REUSE_EVIDENCE_AGENTS_MAX = 16;
/** Shared fingerprints a flag lists. */
export const KEY_REUSE_EVIDENCE_FINGERPRINTS_MAX = 8;

export interface KeyReuseEvidence extends RiskEvidence {
  agentId: string;
  fingerprints: string[];
  others: { agentId: string; ownerId: string }[];
  crossOwner: boolean;
}

/** Checks an agent's reported fingerprints against every other agent's; raises the flag when one is shared. */
export async function checkKeyReuse(db: Db, agent: { id: string; ownerId: string }, fingerprints: readonly string[]): Promise<RaisedFlag | null> {
  if (fingerprints.length === 0) return null;
  const list = [...fingerprints];
  const rows = await db.$queryRaw<{ id: string; owner_id: string; shared: string[] }[]>`
    SELECT id, owner_id, ARRAY(SELECT unnest(key_fingerprints) INTERSECT SELECT unnest(${list}::text[])) AS shared
    FROM agents
    WHERE id <> ${agent.id} AND status <> 'revoked' AND key_fingerprints && ${list}::text[]
    ORDER BY created_at
    LIMIT ${KEY_REUSE_EVIDENCE_AGENTS_MAX}`;
  if (rows.length === 0) return null;
  const crossOwner = rows.some((r) => r.owner_id !== agent.ownerId);
  const evidence: KeyReuseEvidence = {
    agentId: agent.id,
    fingerprints: [...new Set(rows.flatMap((r) => r.shared))].slice(0, KEY_REUSE_EVIDENCE_FINGERPRINTS_MAX),
    others: rows.map((r) => ({ agentId: r.id, ownerId: r.owner_id })),
    crossOwner,
  };
  // Owners holding one provider key are linked accounts (the self-dealing detector reads them).
  await recordLinks(
    viaPrisma(db),
    agent.ownerId,
    rows.map((r) => r.owner_id),
    "key_fingerprint",
  );
  return raiseRiskFlag(db, { kind: KEY_FINGERPRINT_REUSE, subject: `user:${agent.ownerId}`, severity: crossOwner ? 2 : 1, evidence });
}
