/**
 * The hub's receipt crypto per receipt through node:crypto, with each key made into a KeyObject once: the receipt
 * hash synchronously (SHA-256 of a body under 2 KiB is ~3 µs; WebCrypto's `digest` is a promise and a libuv
 * thread-pool job, ~11–14 µs of CPU), and the agent's Ed25519 signature and the hub's countersignature on the thread
 * pool as before (node:crypto's callback forms, without WebCrypto's per-call wrapping), so the gateway's event loop
 * never runs an Ed25519 operation: done there, a check held it ~0.2 ms per receipt and bench:hop served fewer
 * requests per second (docs/performance.md, "Issue 17 — a cheaper ledger"). The bytes are those of
 * protocol/src/receipt.ts (SHA-256 over the same prefix and body; Ed25519 is deterministic), which
 * receipt_crypto.test.ts checks.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
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

/** `verifyReceiptSignature`: the agent's signature over a receipt hash, on the thread pool; false for anything malformed, never rejects. */
export function verifyReceiptSignatureAsync(key: KeyObject, hash: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (signature.length !== RECEIPT_SIGNATURE_BYTES) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      verify(null, Buffer.concat([SIGN_CONTEXT, hash]), key, signature, (error, ok) => resolve(!error && ok));
    } catch {
      resolve(false);
    }
  });
}

/** `countersignReceipt`: the hub's Ed25519 signature over the countersign prefix and the receipt hash, on the thread pool. */
export function countersignReceiptAsync(hubPrivateKey: KeyObject, hash: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    sign(null, Buffer.concat([COUNTERSIGN_CONTEXT, hash]), hubPrivateKey, (error, signature) => (error ? reject(error) : resolve(new Uint8Array(signature))));
  });
}
