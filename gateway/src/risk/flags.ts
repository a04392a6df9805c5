/**
 * Risk flags: what a detector saw, for an administrator to review (portal: Admin → Risk review). At most one
 * flag per kind and subject is open at a time: raising it again updates the open flag's evidence, raise count
 * and time instead of adding another, so a detector that fires every minute leaves one line in the queue.
 * Once an admin decides the flag, the next raise opens a new one.
 *
 * Every detector calls `raiseRiskFlag`; evidence holds ids, counts, hashes and addresses, never keys or content.
 */
import { newId, type Db } from "@wellspring/db/core";

/** Largest evidence a flag keeps, bytes of JSON; a detector keeps its lists bounded to stay under it. */
export const RISK_EVIDENCE_BYTES_MAX = 16 * 1024;
/** Tries when the open flag is decided between our insert and our update (the next try opens a new flag). */
const RAISE_ATTEMPTS_MAX = 3;

const KIND = /^[a-z][a-z0-9_]{2,63}$/;
const SUBJECT = /^(user|agent|key):[A-Za-z0-9_]{1,128}$/;

export type RiskSubject = `user:${string}` | `agent:${string}` | `key:${string}`;
export type RiskEvidence = Record<string, unknown>;

export interface RiskFlagInput {
  /** What raised it, snake_case, e.g. `duplicate_agent_identity`. */
  kind: string;
  subject: RiskSubject;
  /** 1 (low) … 3 (high); a repeat keeps the highest severity raised. */
  severity: 1 | 2 | 3;
  evidence: RiskEvidence;
  /** Combines the open flag's evidence with this raise's. Default: this raise's evidence replaces it. */
  merge?: (previous: RiskEvidence, next: RiskEvidence) => RiskEvidence;
}

export interface RaisedFlag {
  id: string;
  /** 1 when this raise opened the flag. */
  raisedCount: number;
  created: boolean;
}

type Executor = Pick<Db, "$queryRaw">;
/** The Prisma client (the raise runs in its own transaction) or a transaction client (it runs in yours). */
export type RiskDb = Executor & { $transaction?: Db["$transaction"] };

export class RiskFlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RiskFlagError";
  }
}

/** The strings of an evidence list read back from the database (anything else dropped). */
export const evidenceStrings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);

/** `into` followed by the values of `more` it does not hold yet, up to `max` items (evidence lists stay bounded). */
export function appendDistinct(into: readonly string[], more: readonly (string | null)[], max: number): string[] {
  const out = [...into];
  for (const s of more) if (s && !out.includes(s) && out.length < max) out.push(s);
  return out;
}

function evidenceJson(evidence: RiskEvidence): string {
  const json = JSON.stringify(evidence);
  if (new TextEncoder().encode(json).length > RISK_EVIDENCE_BYTES_MAX) {
    throw new RiskFlagError(`Cannot raise a risk flag: evidence is larger than ${RISK_EVIDENCE_BYTES_MAX} bytes`);
  }
  return json;
}

/** Opens a flag, or updates the open flag of the same kind and subject. */
export async function raiseRiskFlag(db: RiskDb, input: RiskFlagInput): Promise<RaisedFlag> {
  if (!KIND.test(input.kind)) throw new RiskFlagError(`Cannot raise a risk flag: kind ${JSON.stringify(input.kind)} is not snake_case`);
  if (!SUBJECT.test(input.subject))
    throw new RiskFlagError(`Cannot raise a risk flag: subject ${JSON.stringify(input.subject)} is not user:, agent: or key:<id>`);
  const fresh = evidenceJson(input.evidence);
  // The read-merge-write of a repeat must not interleave with another gateway's: one transaction.
  if (db.$transaction) return db.$transaction((tx) => raiseIn(tx, input, fresh));
  return raiseIn(db, input, fresh);
}

async function raiseIn(tx: Executor, input: RiskFlagInput, fresh: string): Promise<RaisedFlag> {
  const openKey = `${input.kind}:${input.subject}`;
  for (let attempt = 0; attempt < RAISE_ATTEMPTS_MAX; attempt++) {
    const id = newId("flg");
    const inserted = await tx.$queryRaw<{ id: string }[]>`
      INSERT INTO risk_flags (id, kind, subject, severity, evidence, open_key, raised_count, created_at, last_raised_at)
      VALUES (${id}, ${input.kind}, ${input.subject}, ${input.severity}, ${fresh}::jsonb, ${openKey}, 1, now(), now())
      ON CONFLICT (open_key) DO NOTHING
      RETURNING id`;
    if (inserted.length === 1) return { id, raisedCount: 1, created: true };
    const open = await tx.$queryRaw<{ id: string; evidence: unknown }[]>`
      SELECT id, evidence FROM risk_flags WHERE open_key = ${openKey} FOR UPDATE`;
    const flag = open[0];
    if (!flag) continue; // decided in between: open a new one
    const previous = typeof flag.evidence === "object" && flag.evidence !== null && !Array.isArray(flag.evidence) ? (flag.evidence as RiskEvidence) : {};
    const merged = evidenceJson(input.merge ? input.merge(previous, input.evidence) : input.evidence);
    const updated = await tx.$queryRaw<{ raised_count: number }[]>`
      UPDATE risk_flags SET evidence = ${merged}::jsonb, severity = GREATEST(severity, ${input.severity}),
        raised_count = raised_count + 1, last_raised_at = now()
      WHERE id = ${flag.id}
      RETURNING raised_count`;
    return { id: flag.id, raisedCount: Number(updated[0]!.raised_count), created: false };
  }
  throw new RiskFlagError(`Cannot raise a risk flag: the open ${input.kind} flag of ${input.subject} kept being decided`);
}
