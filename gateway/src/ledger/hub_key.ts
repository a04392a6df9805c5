/**
 * The hub's receipt key: Ed25519, made on first start in the data folder (`receipt-key.pk8`, mode 0600) beside
 * the spool, so every gateway sharing the data folder countersigns with the same key. Its public key is logged
 * at start and shown by `npm run admin -- ledger verify`, for owners who check countersignatures.
 */
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { generateAgentKeyPair } from "@wellspring/protocol";
import type { HubReceiptKey } from "./receipts.ts";

export async function loadHubReceiptKey(file: string): Promise<HubReceiptKey> {
  let pkcs8: Uint8Array;
  try {
    pkcs8 = new Uint8Array(await readFile(file));
  } catch {
    const { privatePkcs8 } = await generateAgentKeyPair();
    await mkdir(dirname(file), { recursive: true });
    // wx: two gateways starting at once never overwrite each other's key; the loser reads the winner's.
    await writeFile(file, privatePkcs8, { flag: "wx", mode: 0o600 }).catch(() => undefined);
    await chmod(file, 0o600);
    pkcs8 = new Uint8Array(await readFile(file));
  }
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8 as Uint8Array<ArrayBuffer>, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  return { privateKey, publicKey: jwk.x! };
}

/** The verify key of the hub's receipt key. */
export async function publicOf(privateKey: CryptoKey): Promise<CryptoKey> {
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  return crypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x! }, { name: "Ed25519" }, true, ["verify"]);
}
