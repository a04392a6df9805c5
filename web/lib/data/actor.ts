import "server-only";
import { getServerSession } from "next-auth";
import { redirect } from "next/navigation";
import { authOptions } from "../auth";
import { db } from "../db";

/** Who is asking, as the database says now (never as a cookie claims): every data function takes one. */
export interface Actor {
  userId: string;
  email: string;
  name: string | null;
  isOwner: boolean;
  isAdmin: boolean;
}

export class Forbidden extends Error {
  constructor(message = "You may not do this.") {
    super(message);
    this.name = "Forbidden";
  }
}

/** The signed-in, active account, or null. */
export async function currentActor(): Promise<Actor | null> {
  const session = await getServerSession(authOptions);
  const claim = session?.user as { id?: string; sv?: number } | undefined;
  if (!claim?.id) return null;
  return actorOfSession(claim.id, claim.sv ?? -1);
}

/**
 * The account a session cookie names, when it is active and the cookie was signed in at the account's current
 * session version (a password change, a reset or "sign out everywhere" raises it, ending older sessions).
 */
export async function actorOfSession(userId: string, sessionVersion: number): Promise<Actor | null> {
  const user = await db().user.findUnique({ where: { id: userId } });
  if (!user || user.status !== "active" || user.sessionVersion !== sessionVersion) return null;
  return { userId: user.id, email: user.email, name: user.name, isOwner: user.isOwner, isAdmin: user.isAdmin };
}

/** The signed-in account, or a redirect to sign in. */
export async function requireActor(): Promise<Actor> {
  const actor = await currentActor();
  if (!actor) redirect("/signin");
  return actor;
}

export function requireOwner(actor: Actor): void {
  if (!actor.isOwner) throw new Forbidden("Only key owners may do this.");
}

export function requireAdmin(actor: Actor): void {
  if (!actor.isAdmin) throw new Forbidden("Only administrators may do this.");
}
