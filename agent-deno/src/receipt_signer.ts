/**
 * The agent's receipt signer: SHA-256 and Ed25519 through node:crypto, with the private key turned into a KeyObject
 * once. WebCrypto's `crypto.subtle.sign` and `digest` cost several times more CPU per call in Deno (a promise and an
 * op each; ~16% of the agent's CPU at load, docs/performance.md); the signature bytes are the same (Ed25519 is
 * deterministic), which receipt_signer_test.ts checks against WebCrypto. The ledger signs with the same calls in
 * its writer's Worker (ledger_writer.ts, a string of code: the worker cannot import this module from the bundle);
 * this one serves the signing benchmark (agent-deno/bench/receipt_sign_bench.ts).
 */
import { createHash, KeyObject, sign } from "node:crypto";
import type { ReceiptSigner } from "../../protocol/src/mod.ts";

export function nodeReceiptSigner(privateKey: CryptoKey): ReceiptSigner {
  const key = KeyObject.from(privateKey);
  if (key.asymmetricKeyType !== "ed25519") throw new TypeError("the agent's key is not an Ed25519 key");
  return {
    sha256: (bytes) => new Uint8Array(createHash("sha256").update(bytes).digest()),
    sign: (message) => new Uint8Array(sign(null, message, key)),
  };
}
