import "server-only";
import { recordAccountSeen, type AccountSeen } from "@wellspring/gateway";
import ipaddr from "ipaddr.js";
import { addressKey } from "./client-address";
import { db } from "./db";

/** The secret the development portal keys link values with when NEXTAUTH_SECRET is unset (never in production). */
const DEVELOPMENT_LINK_SECRET = "wellspring-development-link-secret";

/**
 * The key of the account-link HMACs: the portal's NEXTAUTH_SECRET (npm start keeps one in DATA_DIR). Changing
 * it starts links over: values recorded before no longer compare equal to new ones.
 */
export function linkSecret(): string {
  const secret = process.env.NEXTAUTH_SECRET;
  if (secret) return secret;
  if (process.env.NODE_ENV === "production") throw new Error("Cannot link accounts: NEXTAUTH_SECRET is not set");
  return DEVELOPMENT_LINK_SECRET;
}

/**
 * The key a client address links accounts by (as the throttles count it: IPv6 by /64), or null for an address
 * every local sign-in shares (unknown, loopback): those link nobody.
 */
export function linkableAddress(address: string): string | null {
  if (!ipaddr.isValid(address)) return null;
  if (ipaddr.process(address).range() === "loopback") return null;
  return addressKey(address);
}

/** Records the address and device an account signed up or signed in with (account links). */
export function recordSeen(userId: string, at: AccountSeen["at"], clientAddress: string, deviceId: string | null): Promise<void> {
  return recordAccountSeen(db(), linkSecret(), userId, { at, addressKey: linkableAddress(clientAddress), deviceId });
}
