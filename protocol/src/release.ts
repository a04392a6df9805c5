/**
 * Signed agent releases (runtime-neutral: the launcher verifies in Deno, the release tool and the hub in Node).
 *
 * A release is three files: `agent.js` (the bundled agent), `manifest.json` (version, protocol range, the
 * bundle's SHA-256 and size, creation and expiry times, the permissions it needs beyond what the launcher
 * grants every agent, optionally the next set of release keys) and `manifest.sig` (Ed25519 signatures over
 * the manifest's exact bytes, by release key id). The bundle is bound to the manifest by its hash, the
 * manifest to the platform by its signatures; the launcher refuses anything else (docs/operations/agent.md).
 */
import { fromBase64Url, fromUtf8, sha256, toBase64Url, toHex, utf8 } from "./bytes.ts";
import { arrayOf, int, object, optional, str, type Infer } from "./schema.ts";

export const RELEASE_FORMAT = "wellspring-agent-release/1";
/** Signatures cover this context line followed by the manifest's bytes. */
export const RELEASE_SIGNATURE_CONTEXT = "wellspring/agent-release/v1\n";
/** The largest manifest and signature file accepted, bytes. */
export const RELEASE_MANIFEST_BYTES_MAX = 64 * 1024;
/** The largest bundle accepted, bytes. */
export const RELEASE_BUNDLE_BYTES_MAX = 32 * 1024 * 1024;
/** File names inside a release. */
export const RELEASE_FILES = { manifest: "manifest.json", signatures: "manifest.sig", bundle: "agent.js" } as const;

/** MAJOR.MINOR.PATCH, numbers only. */
export const VERSION_PATTERN = /^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})$/;

export function isVersion(v: string): boolean {
  return VERSION_PATTERN.test(v);
}

/** Negative, zero or positive as `a` is older than, the same as or newer than `b`. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  if (!isVersion(a) || !isVersion(b)) throw new RangeError(`not a version: ${isVersion(a) ? b : a}`);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

const b64url = (max: number) => str(max, /^[A-Za-z0-9_-]+$/);
const keyId = str(40, /^rk_[0-9a-f]{16}$/);
const isoTime = str(40, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/);
const netPermission = str(300, /^[a-z0-9.-]+:\d{1,5}$/);
const envName = str(128, /^[A-Z_][A-Z0-9_]*$/);

export const releaseKey = object({ keyId, publicKey: b64url(64) });
export type ReleaseKey = Infer<typeof releaseKey>;

/** A set of release keys: the install pins one (release-keys.json); a release may carry the next (rotation). */
export const releaseKeySet = object({
  /** Grows with every rotation; the launcher trusts the highest serial it has accepted. */
  serial: int(1, 1_000_000),
  keys: arrayOf(releaseKey, 8),
});
export type ReleaseKeySet = Infer<typeof releaseKeySet>;

export const releaseManifest = object({
  format: str(40, /^wellspring-agent-release\/1$/),
  version: str(20, VERSION_PATTERN),
  /** Tunnel protocol versions the release speaks; the hub's must be inside. */
  protocol: object({ min: int(1, 65_535), max: int(1, 65_535) }),
  bundle: object({ file: str(20, /^agent\.js$/), sha256: str(64, /^[0-9a-f]{64}$/), bytes: int(1, Number.MAX_SAFE_INTEGER) }),
  createdAt: isoTime,
  /** After this the release is not installed any more (a running agent keeps running). */
  expiresAt: isoTime,
  /**
   * Permissions the release needs beyond those the launcher computes from the owner's files (hub, official
   * providers, data folder, key variables). Empty for an ordinary release; anything here waits for the owner's
   * approval (`./wellspring-agent approve-update`).
   */
  permissions: object({ net: arrayOf(netPermission, 16), env: arrayOf(envName, 16) }),
  /** The release keys to trust from now on; honoured only when every key trusted now signed this manifest. */
  releaseKeys: optional(releaseKeySet),
});
export type ReleaseManifest = Infer<typeof releaseManifest>;

export const releaseSignatures = object({ signatures: arrayOf(object({ keyId, signature: b64url(128) }), 8) });
export type ReleaseSignatures = Infer<typeof releaseSignatures>;

/** `rk_` + the first 16 hex digits of SHA-256 of the raw 32-byte public key. */
export async function releaseKeyId(publicKey: string): Promise<string> {
  return `rk_${toHex(await sha256(fromBase64Url(publicKey))).slice(0, 16)}`;
}

function signedBytes(manifestBytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const context = utf8(RELEASE_SIGNATURE_CONTEXT);
  const out = new Uint8Array(context.length + manifestBytes.length);
  out.set(context, 0);
  out.set(manifestBytes, context.length);
  return out;
}

export async function signManifest(privateKey: CryptoKey, manifestBytes: Uint8Array): Promise<string> {
  return toBase64Url(new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, privateKey, signedBytes(manifestBytes))));
}

async function verifyOne(key: ReleaseKey, signature: string, manifestBytes: Uint8Array): Promise<boolean> {
  try {
    const raw = fromBase64Url(key.publicKey);
    const sig = fromBase64Url(signature);
    if (raw.length !== 32 || sig.length !== 64) return false;
    const k = await crypto.subtle.importKey("raw", raw as Uint8Array<ArrayBuffer>, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, k, sig as Uint8Array<ArrayBuffer>, signedBytes(manifestBytes));
  } catch {
    return false;
  }
}

/** The ids of the trusted keys whose signature over `manifestBytes` verifies. */
export async function validSigners(trusted: ReleaseKeySet, signatures: ReleaseSignatures, manifestBytes: Uint8Array): Promise<string[]> {
  const out: string[] = [];
  for (const key of trusted.keys) {
    const sig = signatures.signatures.find((s) => s.keyId === key.keyId);
    if (sig && (await verifyOne(key, sig.signature, manifestBytes))) out.push(key.keyId);
  }
  return out;
}

export class ReleaseRefused extends Error {
  constructor(
    readonly reason: ReleaseRefusal,
    message: string,
  ) {
    super(message);
    this.name = "ReleaseRefused";
  }
}

/** Why a release is refused; stable codes for logs and tests. */
export type ReleaseRefusal =
  | "malformed"
  | "unsigned"
  | "bad_signature"
  | "tampered"
  | "oversized"
  | "expired"
  | "not_newer"
  | "wrong_version"
  | "protocol"
  | "permissions"
  | "key_rotation";

export interface VerifyReleaseOptions {
  trusted: ReleaseKeySet;
  now: Date;
  /** The version the hub offered (the manifest must say the same), if any. */
  expectVersion?: string;
  /** Refuse unless the release is newer than this (the highest version this agent has committed). */
  newerThan?: string | null;
  /** The hub's tunnel protocol version, checked against the release's range. */
  hubProtocol?: number;
  /** Extra permissions the owner approved for this version; null: anything beyond the baseline is refused. */
  approved?: { net: readonly string[]; env: readonly string[] } | null;
  /** Check expiry (installing) or not (booting an installed release: expiry never stops a running agent). */
  checkExpiry: boolean;
}

export interface VerifiedRelease {
  manifest: ReleaseManifest;
  signers: string[];
  /** The key set to trust from now on, when this release rotates keys (already checked). */
  nextKeys: ReleaseKeySet | null;
}

/**
 * Checks a release's three files against the trusted keys: signatures, bundle size and hash, expiry, version
 * order, protocol range and permissions. Throws ReleaseRefused naming the first problem.
 */
export async function verifyRelease(
  files: { manifest: Uint8Array; signatures: Uint8Array; bundle: Uint8Array | null },
  o: VerifyReleaseOptions,
): Promise<VerifiedRelease> {
  const fail = (reason: ReleaseRefusal, message: string): never => {
    throw new ReleaseRefused(reason, message);
  };
  if (files.manifest.length > RELEASE_MANIFEST_BYTES_MAX || files.signatures.length > RELEASE_MANIFEST_BYTES_MAX)
    fail("oversized", "manifest or signature file is larger than allowed");
  let manifest: ReleaseManifest;
  let signatures: ReleaseSignatures;
  try {
    manifest = releaseManifest(JSON.parse(fromUtf8(files.manifest)) as unknown, "manifest");
  } catch (error) {
    return fail("malformed", `manifest is not a release manifest: ${(error as Error).message}`);
  }
  try {
    signatures = releaseSignatures(JSON.parse(fromUtf8(files.signatures)) as unknown, "signatures");
  } catch {
    return fail("unsigned", "the release carries no readable signature");
  }
  if (signatures.signatures.length === 0) fail("unsigned", "the release carries no signature");
  const signers = await validSigners(o.trusted, signatures, files.manifest);
  if (signers.length === 0) fail("bad_signature", "no signature verifies with a pinned release key");
  let nextKeys: ReleaseKeySet | null = null;
  if (manifest.releaseKeys && manifest.releaseKeys.serial > o.trusted.serial) {
    // A new key set needs every key trusted now: one stolen key cannot replace the others.
    if (signers.length !== o.trusted.keys.length)
      fail("key_rotation", `rotating release keys needs a signature from every pinned key (${signers.length} of ${o.trusted.keys.length})`);
    for (const k of manifest.releaseKeys.keys)
      if ((await releaseKeyId(k.publicKey)) !== k.keyId) fail("key_rotation", `release key ${k.keyId} does not match its public key`);
    if (manifest.releaseKeys.keys.length === 0) fail("key_rotation", "a release key set may not be empty");
    nextKeys = manifest.releaseKeys;
  }
  if (manifest.bundle.bytes > RELEASE_BUNDLE_BYTES_MAX)
    fail("oversized", `the bundle is ${manifest.bundle.bytes} bytes; at most ${RELEASE_BUNDLE_BYTES_MAX} are accepted`);
  if (o.expectVersion !== undefined && manifest.version !== o.expectVersion)
    fail("wrong_version", `the manifest says ${manifest.version}, ${o.expectVersion} was offered`);
  if (o.newerThan && compareVersions(manifest.version, o.newerThan) <= 0)
    fail("not_newer", `${manifest.version} is not newer than ${o.newerThan}, the newest version this agent has run`);
  if (o.checkExpiry && Date.parse(manifest.expiresAt) <= o.now.getTime()) fail("expired", `the release expired at ${manifest.expiresAt}`);
  if (manifest.protocol.min > manifest.protocol.max) fail("malformed", "protocol range is empty");
  if (o.hubProtocol !== undefined && (o.hubProtocol < manifest.protocol.min || o.hubProtocol > manifest.protocol.max)) {
    fail("protocol", `the release speaks protocol ${manifest.protocol.min}–${manifest.protocol.max}, the hub ${o.hubProtocol}`);
  }
  const approved = o.approved ?? { net: [], env: [] };
  const unapproved = [
    ...manifest.permissions.net.filter((n) => !approved.net.includes(n)).map((n) => `net ${n}`),
    ...manifest.permissions.env.filter((e) => !approved.env.includes(e)).map((e) => `env ${e}`),
  ];
  if (unapproved.length > 0) fail("permissions", `the release asks for permissions the owner has not approved: ${unapproved.join(", ")}`);
  if (files.bundle) {
    if (files.bundle.length > manifest.bundle.bytes || files.bundle.length > RELEASE_BUNDLE_BYTES_MAX)
      fail("oversized", `the bundle is ${files.bundle.length} bytes, the manifest says ${manifest.bundle.bytes}`);
    if (files.bundle.length !== manifest.bundle.bytes)
      fail("tampered", `the bundle is ${files.bundle.length} bytes, the manifest says ${manifest.bundle.bytes}`);
    if (toHex(await sha256(files.bundle)) !== manifest.bundle.sha256) fail("tampered", "the bundle's SHA-256 is not the one signed");
  }
  return { manifest, signers, nextKeys };
}

/** The CONTROL UPDATE_AVAILABLE body: what the hub offers and the oldest version it still admits. */
export const updateAvailable = object({
  /** The release agents should run (null: none published). */
  latestVersion: (v: unknown, p: string) => (v === null ? null : str(20, VERSION_PATTERN)(v, p)),
  /** Agents below this version are refused at the handshake (close UPDATE_REQUIRED); null: none. */
  minimumVersion: (v: unknown, p: string) => (v === null ? null : str(20, VERSION_PATTERN)(v, p)),
  /** The hub's tunnel protocol version. */
  protocolVersion: int(1, 65_535),
});
export type UpdateAvailable = Infer<typeof updateAvailable>;
