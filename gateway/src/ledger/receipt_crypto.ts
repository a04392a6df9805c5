/**
 * The hub's receipt crypto per receipt — the receipt hash, the agent's Ed25519 signature checked, the hub's
 * countersignature — through node:crypto, synchronously, with each key made into a KeyObject once. WebCrypto
 * (`crypto.subtle`, which protocol/src/receipt.ts uses so that both runtimes share it) costs several times the CPU
 * per call in Node: each digest, verify and sign is a promise and a job on libuv's thread pool (measured per receipt
 * on this machine: digest 102 → 7 µs, verify 213 → 133 µs, sign 112 → 41 µs; docs/performance.md, "Issue 17 — a
 * cheaper ledger"). The bytes are the same: SHA-256 over the same prefix and body, and Ed25519 is deterministic
 * (receipt_crypto.test.ts checks both against protocol/src/receipt.ts).
 */
import { createHash, createPublicKey, KeyObject, sign, verify } from "node:crypto";
import {
  fromBase64Url,
  RECEIPT_COUNTERSIGN_CONTEXT,
  RECEIPT_HASH_CONTEXT,
  RECEIPT_SIGN_CONTEXT,
  RECEIPT_SIGNATURE_BYTES,
  toBase64Url,
} from "@wellspring/protocol";

const HASH_CONTEXT = Buffer.from(RECEIPT_HASH_CONTEXT, "utf8");
const SIGN_CONTEXT = Buffer.from(RECEIPT_SIGN_CONTEXT, "utf8");
const COUNTERSIGN_CONTEXT = Buffer.from(RECEIPT_COUNTERSIGN_CONTEXT, "utf8");

/** `receiptHash` (protocol/src/receipt.ts): SHA-256 over the domain prefix and the canonical body. */
export function receiptHashSync(body: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(HASH_CONTEXT).update(body).digest());
}

/** An agent's raw 32-byte Ed25519 public key (base64url) as a KeyObject; null when it is not one. */
export function receiptVerifyKeyObject(publicKeyB64: string): KeyObject | null {
  try {
    // As `importReceiptVerifyKey` reads it: base64url of exactly 32 bytes.
    const raw = fromBase64Url(publicKeyB64);
    if (raw.length !== 32) return null;
    return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: toBase64Url(raw) }, format: "jwk" });
  } catch {
    return null;
  }
}

/** `verifyReceiptSignature`: the agent's signature over a receipt hash; false for anything malformed, never throws. */
export function verifyReceiptSignatureSync(key: KeyObject, hash: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== RECEIPT_SIGNATURE_BYTES) return false;
  try {
    return verify(null, Buffer.concat([SIGN_CONTEXT, hash]), key, signature);
  } catch {
    return false;
  }
}

/** `countersignReceipt`: the hub's Ed25519 signature over the countersign prefix and the receipt hash. */
export function countersignReceiptSync(hubPrivateKey: KeyObject, hash: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, Buffer.concat([COUNTERSIGN_CONTEXT, hash]), hubPrivateKey));
}
