/** Prefixed random ids: every id in a log says what it is (`usr_…`, `key_…`, `agt_…`, `req_…`). */
import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower case

export function randomToken(length: number): string {
  const bytes = randomBytes(length);
  let out = "";
  for (const b of bytes) out += ALPHABET[b & 31];
  return out;
}

export type IdPrefix =
  | "usr"
  | "key"
  | "agt"
  | "enr"
  | "req"
  | "ses"
  | "gw"
  | "hub"
  | "rdb"
  | "rdc"
  | "pay"
  | "plan"
  | "grt"
  | "flg"
  | "lse"
  | "prt"
  | "mail"
  | "stp"
  | "hld"
  | "cr"
  | "crf"
  | "cnr";

export function newId(prefix: IdPrefix): string {
  return `${prefix}_${randomToken(20)}`;
}
