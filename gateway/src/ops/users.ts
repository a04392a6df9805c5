/**
 * Accounts as operators change them: create (CLI), make an administrator, suspend or reactivate, move to a
 * plan. Each change is one transaction with its audit event and, where gateways must follow (a suspended
 * user's keys stop at once; a plan applies to requests that start from now), the hub event.
 */
import { newId, publishHubEvent, type Db } from "@wellspring/db/core";
import { recordAudit, type Actor } from "./audit.ts";

/** Creates a user, or adds the roles to an existing one; returns it. */
export async function ensureUser(
  db: Db,
  actor: Actor,
  email: string,
  roles: { admin?: boolean; owner?: boolean } = {},
): Promise<{ id: string; email: string; isAdmin: boolean; isOwner: boolean }> {
  return db.$transaction(async (tx) => {
    const existing = await tx.user.findUnique({ where: { email } });
    const user = existing
      ? await tx.user.update({ where: { id: existing.id }, data: { isAdmin: roles.admin || undefined, isOwner: roles.owner || undefined } })
      : await tx.user.create({ data: { id: newId("usr"), email, isAdmin: roles.admin ?? false, isOwner: roles.owner ?? false } });
    await recordAudit(tx, actor, existing ? "account.roles_added" : "account.created", `user:${user.id}`, {
      admin: roles.admin ?? false,
      owner: roles.owner ?? false,
    });
    return user;
  });
}

/** Suspends or reactivates a user (never `self`); their keys follow at once, on every gateway. */
export async function setUserStatus(db: Db, actor: Actor, userId: string, status: "active" | "suspended", note: string): Promise<boolean> {
  return db.$transaction(async (tx) => {
    const n = await tx.user.updateMany({ where: { id: userId }, data: { status } });
    if (n.count === 0) return false;
    await recordAudit(tx, actor, `user.${status === "active" ? "reactivated" : "suspended"}`, `user:${userId}`, { note });
    await publishHubEvent(tx, { kind: "user_changed", userId });
    return true;
  });
}

/** Moves a user to a plan (null: the default plan). */
export async function setUserPlan(db: Db, actor: Actor, userId: string, planId: string | null): Promise<"ok" | "no_plan" | "no_user"> {
  return db.$transaction(async (tx) => {
    if (planId && !(await tx.plan.findUnique({ where: { id: planId } }))) return "no_plan";
    const n = await tx.user.updateMany({ where: { id: userId }, data: { planId } });
    if (n.count === 0) return "no_user";
    await recordAudit(tx, actor, "user.plan_set", `user:${userId}`, { planId });
    await publishHubEvent(tx, { kind: "user_changed", userId });
    return "ok";
  });
}
