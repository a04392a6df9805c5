/**
 * What the portal records for account linking (risk/account_links.ts): the address and device an account signs
 * up and signs in with, and the payout destination an owner sets. Values are kept as keyed HMACs under the
 * portal's secret (`linkSecret`); the payout destination itself is also kept on the user, for the admin who pays.
 */
import type { Db } from "@wellspring/db/core";
import { linkValueKey, recordSignal, viaPrisma, type SignalKind } from "../risk/account_links.ts";

/** Longest payout destination an owner may set, characters. */
export const PAYOUT_DESTINATION_CHARS_MAX = 200;
/** Shortest payout destination, characters (an email address or an account number is longer). */
const PAYOUT_DESTINATION_CHARS_MIN = 5;

export interface AccountSeen {
  /** Where it was seen: at sign-up or at a sign-in. */
  at: "signup" | "signin";
  /** The client address as the throttles count it (IPv6 by /64); null when it cannot link (unknown, loopback). */
  addressKey: string | null;
  /** The portal's device cookie; null when there is none. */
  deviceId: string | null;
}

/** Records the address and device an account was seen with, linking it to accounts seen with the same. */
export async function recordAccountSeen(db: Db, linkSecret: string, userId: string, seen: AccountSeen): Promise<void> {
  const run = viaPrisma(db);
  const signals: [SignalKind, string | null][] = [
    [seen.at === "signup" ? "signup_address" : "signin_address", seen.addressKey],
    ["device", seen.deviceId],
  ];
  for (const [kind, value] of signals) {
    if (value !== null) await recordSignal(run, { userId, kind, valueKey: linkValueKey(linkSecret, kind, value) });
  }
}

/** The form a destination is compared in: case, spaces and separators do not make two destinations differ. */
export function normalizedPayoutDestination(text: string): string {
  return text.toLowerCase().replace(/[\s\-_.]/g, "");
}

/** Why a payout destination cannot be set, or null. */
export function payoutDestinationProblem(text: string): string | null {
  const trimmed = text.trim();
  if (trimmed.length < PAYOUT_DESTINATION_CHARS_MIN) return `Enter where to pay you (at least ${PAYOUT_DESTINATION_CHARS_MIN} characters).`;
  if (trimmed.length > PAYOUT_DESTINATION_CHARS_MAX) return `Use at most ${PAYOUT_DESTINATION_CHARS_MAX} characters.`;
  if (/\p{Cc}/u.test(trimmed)) return "Use one line of plain text.";
  return null;
}

/**
 * Sets an owner's payout destination (what the admin pays to), audited with its fingerprint only, and links the
 * owner to accounts that gave the same destination. Returns the problem when the text is not accepted.
 */
export async function setPayoutDestination(db: Db, linkSecret: string, ownerId: string, text: string): Promise<string | null> {
  const problem = payoutDestinationProblem(text);
  if (problem) return problem;
  const destination = text.trim();
  const valueKey = linkValueKey(linkSecret, "payout_destination", normalizedPayoutDestination(destination));
  await db.$transaction(async (tx) => {
    await tx.user.update({ where: { id: ownerId }, data: { payoutDestination: destination } });
    await tx.auditEvent.create({
      data: { actor: `user:${ownerId}`, action: "account.payout_destination_set", subject: `user:${ownerId}`, detail: { fingerprint: valueKey.slice(0, 12) } },
    });
    await recordSignal(viaPrisma(tx), { userId: ownerId, kind: "payout_destination", valueKey });
  });
  return null;
}
