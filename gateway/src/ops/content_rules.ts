/**
 * Prohibited-term lists, managed by admins (admin API; the portal's admin page calls the same): add a term to a
 * list, remove it, list them. Each change is one transaction with its audit event; gateways pick the rules up
 * within CONTENT_RULES_REFRESH_MS.
 */
import { newId, type Db } from "@wellspring/db/core";
import { CONTENT_TERM_CHARS_MAX, normalizeTerm } from "../risk/content_screen.ts";
import { recordAudit, type Actor } from "./audit.ts";

const LIST = /^[a-z0-9_-]{1,40}$/;

export class ContentRuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ContentRuleError";
  }
}

export async function addContentRule(db: Db, actor: Actor, list: string, term: string): Promise<string> {
  if (!LIST.test(list)) throw new ContentRuleError("list: must be 1–40 characters of a–z, 0–9, _ or -");
  const length = normalizeTerm(term).length;
  if (length === 0) throw new ContentRuleError("term: must contain a character that is not removed by normalisation");
  if (length > CONTENT_TERM_CHARS_MAX) throw new ContentRuleError(`term: must be at most ${CONTENT_TERM_CHARS_MAX} characters`);
  return db.$transaction(async (tx) => {
    const id = newId("cr");
    await tx.contentRule.create({ data: { id, list, term, createdBy: actor } });
    // The audit keeps the rule's id and list, not the term (the term is in the rule, readable by admins only).
    await recordAudit(tx, actor, "content_rule.added", `content_rule:${id}`, { list });
    return id;
  });
}

export async function removeContentRule(db: Db, actor: Actor, id: string): Promise<boolean> {
  return db.$transaction(async (tx) => {
    const n = await tx.contentRule.updateMany({ where: { id, active: true }, data: { active: false, removedAt: new Date() } });
    if (n.count === 0) return false;
    await recordAudit(tx, actor, "content_rule.removed", `content_rule:${id}`, {});
    return true;
  });
}

export async function listContentRules(db: Db) {
  return db.contentRule.findMany({ where: { active: true }, orderBy: [{ list: "asc" }, { createdAt: "asc" }] });
}
