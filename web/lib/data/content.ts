import "server-only";
import { addContentRule, ContentRuleError, listContentRules, removeContentRule } from "@wellspring/gateway";
import { db } from "../db";
import { requireAdmin, type Actor } from "./actor";

export interface ContentRuleRow {
  id: string;
  list: string;
  term: string;
  createdAt: Date;
  createdBy: string;
}

/** The active prohibited terms (admins only). */
export async function contentRules(actor: Actor): Promise<ContentRuleRow[]> {
  requireAdmin(actor);
  return listContentRules(db());
}

/** Adds a prohibited term to a list; the same operation as `POST /admin/v1/content-rules`, audited. */
export async function addRule(actor: Actor, list: string, term: string): Promise<{ ok: true } | { ok: false; error: string }> {
  requireAdmin(actor);
  try {
    await addContentRule(db(), `user:${actor.userId}`, list, term);
    return { ok: true };
  } catch (error) {
    if (error instanceof ContentRuleError) return { ok: false, error: error.message };
    throw error;
  }
}

export async function removeRule(actor: Actor, id: string): Promise<boolean> {
  requireAdmin(actor);
  return removeContentRule(db(), `user:${actor.userId}`, id);
}
