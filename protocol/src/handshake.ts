/**
 * Agent identity: Ed25519 challenge–response, with Web Crypto only.
 *
 * The signed message binds the hub id the agent expects, the session id and nonce the hub issued, the
 * agent's timestamp and the agent id. A signature for one hub, session or nonce is worthless for another.
 */
import { fromBase64Url, sha256, toBase64Url, toHex, utf8 } from "./bytes.ts";

export const AUTH_CONTEXT = "wellspring/agent-auth/v1";

export interface AuthFields {
  hubId: string;
  sessionId: string;
  nonce: string;
  timestampMs: number;
  agentId: string;
}

export function authMessage(f: AuthFields): Uint8Array {
  for (const part of [f.hubId, f.sessionId, f.nonce, f.agentId]) {
    if (part.includes("\n")) throw new RangeError("auth fields cannot contain newlines");
  }
  return utf8([AUTH_CONTEXT, f.hubId, f.sessionId, f.nonce, String(f.timestampMs), f.agentId].join("\n"));
}

export interface AgentKeyPair {
  privateKey: CryptoKey;
  /** Raw 32-byte Ed25519 public key, base64url. */
  publicKey: string;
}

export async function generateAgentKeyPair(): Promise<{ pair: AgentKeyPair; privatePkcs8: Uint8Array }> {
  // Node's types know Ed25519 makes a key pair; Deno's (this module runs in the agent too) say CryptoKey | CryptoKeyPair.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  return { pair: { privateKey: pair.privateKey, publicKey: toBase64Url(raw) }, privatePkcs8: pkcs8 };
}

export async function importAgentPrivateKey(pkcs8: Uint8Array): Promise<CryptoKey> {
  return await crypto.subtle.importKey("pkcs8", pkcs8 as Uint8Array<ArrayBuffer>, { name: "Ed25519" }, false, ["sign"]);
}

export async function signAuth(privateKey: CryptoKey, fields: AuthFields): Promise<string> {
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, privateKey, authMessage(fields) as Uint8Array<ArrayBuffer>);
  return toBase64Url(new Uint8Array(sig));
}

/** Verifies a signature; false for any malformed key or signature, never throws. */
export async function verifyAuth(publicKeyB64: string, signatureB64: string, fields: AuthFields): Promise<boolean> {
  try {
    const raw = fromBase64Url(publicKeyB64);
    const sig = fromBase64Url(signatureB64);
    if (raw.length !== 32 || sig.length !== 64) return false;
    const key = await crypto.subtle.importKey("raw", raw as Uint8Array<ArrayBuffer>, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, sig as Uint8Array<ArrayBuffer>, authMessage(fields) as Uint8Array<ArrayBuffer>);
  } catch {
    return false;
  }
}

/** A short, stable, non-secret fingerprint of an agent public key, shown in the portal. */
export async function publicKeyFingerprint(publicKeyB64: string): Promise<string> {
  return `SHA256:${toHex(await sha256(fromBase64Url(publicKeyB64))).slice(0, 32)}`;
}
