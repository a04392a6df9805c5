/**
 * Agent releases, for the platform that signs them and for anyone who wants to check one
 * (docs/operations/agent.md, "Updates"):
 *
 *   npm run release -- keygen --out DIR --name primary
 *       an Ed25519 release key: DIR/primary.pk8 (private, mode 0600; keep it offline) and DIR/primary.pub.json
 *   npm run release -- pin --key DIR/primary.pub.json --key DIR/backup.pub.json [--serial 1] [--out agent-deno/release-keys.json]
 *       the key set agent installs pin (a primary and a backup)
 *   npm run release -- build --version X.Y.Z --key DIR/primary.pk8 [--key DIR/backup.pk8] [--out DIR] [--expires-days 90]
 *                           [--net HOST:PORT]… [--env NAME]… [--next-keys FILE] [--source agent-deno]
 *       bundles the agent (deno bundle: one file), writes manifest.json and signs it (manifest.sig)
 *   npm run release -- verify DIR [--keys agent-deno/release-keys.json]
 *       checks a release's signatures, bundle size and hash, and expiry against the pinned keys; exit 1 if not
 *
 * Publishing to a hub: `npm run admin -- publish-release --dir DIR --latest [--minimum X.Y.Z]`.
 */
import { execFileSync } from "node:child_process";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createHash } from "node:crypto";
import {
  isVersion,
  PROTOCOL_VERSION,
  RELEASE_FILES,
  RELEASE_FORMAT,
  releaseKeyId,
  releaseKeySet,
  ReleaseRefused,
  signManifest,
  toBase64Url,
  verifyRelease,
  type ReleaseKeySet,
  type ReleaseManifest,
} from "@wellspring/protocol";

import { readKeySet, readReleaseDir } from "../gateway/src/ops/releases.ts";

const ROOT = resolve(import.meta.dirname, "..");
/** A release is installable for this long unless --expires-days says otherwise. */
export const RELEASE_VALID_DAYS_DEFAULT = 90;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

function flags(args: string[], name: string): string[] {
  return args.flatMap((a, i) => (a === `--${name}` && args[i + 1] ? [args[i + 1]!] : []));
}

export async function keygen(out: string, name: string): Promise<{ keyId: string; publicKey: string; privatePath: string }> {
  if (!/^[a-z0-9_-]{1,40}$/.test(name)) throw new Error("--name: lower-case letters, digits, _ and - only");
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const publicKey = toBase64Url(new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const keyId = await releaseKeyId(publicKey);
  await mkdir(out, { recursive: true, mode: 0o700 });
  const privatePath = join(out, `${name}.pk8`);
  await writeFile(privatePath, pkcs8, { mode: 0o600, flag: "wx" });
  await chmod(privatePath, 0o600);
  await writeFile(join(out, `${name}.pub.json`), JSON.stringify({ keyId, publicKey }, null, 2) + "\n", { flag: "wx" });
  return { keyId, publicKey, privatePath };
}

export async function pin(keyFiles: string[], serial: number): Promise<ReleaseKeySet> {
  if (keyFiles.length === 0) throw new Error("give at least one --key FILE.pub.json (a primary and a backup)");
  const keys = [];
  for (const f of keyFiles) {
    const k = JSON.parse(await readFile(f, "utf8")) as { keyId: string; publicKey: string };
    if ((await releaseKeyId(k.publicKey)) !== k.keyId) throw new Error(`${f}: keyId does not match the public key`);
    keys.push({ keyId: k.keyId, publicKey: k.publicKey });
  }
  return releaseKeySet({ serial, keys }, "keys");
}

async function privateKey(path: string): Promise<{ key: CryptoKey; keyId: string }> {
  const pkcs8 = await readFile(path);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  // The public half, for the key id: derived from the private key's JWK (x = the public key).
  const jwk = await crypto.subtle.exportKey("jwk", key);
  return { key, keyId: await releaseKeyId(jwk.x!) };
}

export interface BuildOptions {
  version: string;
  keyFiles: string[];
  out: string;
  /** The agent's folder to bundle (agent-deno/, with protocol/ beside it). */
  source: string;
  expiresDays: number;
  net: string[];
  env: string[];
  nextKeys: ReleaseKeySet | null;
  now?: Date;
}

/** Bundles `source`/src/main.ts with `deno bundle` and signs the manifest. Returns the release folder. */
export async function build(o: BuildOptions): Promise<{ dir: string; manifest: ReleaseManifest }> {
  if (!isVersion(o.version)) throw new Error("--version must be X.Y.Z");
  const versionFile = await readFile(join(o.source, "src/version.ts"), "utf8");
  const inTree = /AGENT_VERSION = "([^"]+)"/.exec(versionFile)?.[1];
  if (inTree !== o.version)
    throw new Error(
      `Cannot build ${o.version}: ${o.source}/src/version.ts says ${inTree ?? "nothing"} (the agent reports its version from there; bump it first)`,
    );
  if (o.keyFiles.length === 0) throw new Error("give at least one --key FILE.pk8 to sign with");
  const dir = resolve(o.out, o.version);
  await mkdir(dir, { recursive: true });
  const bundlePath = join(dir, RELEASE_FILES.bundle);
  const deno = join(ROOT, "node_modules/.bin/deno");
  execFileSync(deno, ["bundle", "--quiet", "--platform", "deno", "--packages", "bundle", "-o", bundlePath, "src/main.ts"], {
    cwd: o.source,
    stdio: ["ignore", "inherit", "inherit"],
  });
  const bundle = await readFile(bundlePath);
  const now = o.now ?? new Date();
  const manifest: ReleaseManifest = {
    format: RELEASE_FORMAT,
    version: o.version,
    protocol: { min: PROTOCOL_VERSION, max: PROTOCOL_VERSION },
    bundle: { file: RELEASE_FILES.bundle, sha256: createHash("sha256").update(bundle).digest("hex"), bytes: bundle.length },
    createdAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + o.expiresDays * 86_400_000).toISOString(),
    permissions: { net: o.net, env: o.env },
    releaseKeys: o.nextKeys ?? undefined,
  };
  const manifestBytes = new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n");
  const signatures = [];
  for (const f of o.keyFiles) {
    const { key, keyId } = await privateKey(f);
    signatures.push({ keyId, signature: await signManifest(key, manifestBytes) });
  }
  await writeFile(join(dir, RELEASE_FILES.manifest), manifestBytes);
  await writeFile(join(dir, RELEASE_FILES.signatures), JSON.stringify({ signatures }, null, 2) + "\n");
  return { dir, manifest };
}

/** Checks a release folder; the problems (empty: it verifies). */
export async function verifyDir(
  dir: string,
  keys: ReleaseKeySet,
  now = new Date(),
): Promise<{ manifest: ReleaseManifest | null; signers: string[]; problem: string | null }> {
  try {
    const files = await readReleaseDir(dir);
    const asked = (JSON.parse(new TextDecoder().decode(files.manifest)) as { permissions?: { net: string[]; env: string[] } }).permissions ?? null;
    const v = await verifyRelease(files, { trusted: keys, now, approved: asked, checkExpiry: true });
    return { manifest: v.manifest, signers: v.signers, problem: null };
  } catch (error) {
    return { manifest: null, signers: [], problem: error instanceof ReleaseRefused ? `${error.reason}: ${error.message}` : (error as Error).message };
  }
}

async function main(args: string[]): Promise<number> {
  const [command] = args;
  if (command === "keygen") {
    const out = flag(args, "out");
    if (!out) throw new Error("usage: release keygen --out DIR --name NAME");
    const k = await keygen(out, flag(args, "name") ?? "primary");
    console.log(`release key ${k.keyId}: private key ${k.privatePath} (mode 0600: keep it offline), public key ${k.publicKey}`);
    return 0;
  }
  if (command === "pin") {
    const set = await pin(flags(args, "key"), Number(flag(args, "serial") ?? "1"));
    const out = flag(args, "out");
    const text = JSON.stringify(set, null, 2) + "\n";
    if (out) await writeFile(out, text);
    console.log(out ? `pinned ${set.keys.length} release keys (serial ${set.serial}) in ${out}` : text);
    return 0;
  }
  if (command === "build") {
    const nextKeysFile = flag(args, "next-keys");
    const { dir, manifest } = await build({
      version: flag(args, "version") ?? "",
      keyFiles: flags(args, "key"),
      out: flag(args, "out") ?? join(ROOT, "releases"),
      source: resolve(flag(args, "source") ?? join(ROOT, "agent-deno")),
      expiresDays: Number(flag(args, "expires-days") ?? RELEASE_VALID_DAYS_DEFAULT),
      net: flags(args, "net"),
      env: flags(args, "env"),
      nextKeys: nextKeysFile ? await readKeySet(nextKeysFile) : null,
    });
    console.log(
      `release ${manifest.version} in ${dir}: bundle ${manifest.bundle.bytes} bytes, sha256 ${manifest.bundle.sha256}, expires ${manifest.expiresAt}`,
    );
    return 0;
  }
  if (command === "verify") {
    const dir = args[1];
    if (!dir || dir.startsWith("--")) throw new Error("usage: release verify DIR [--keys FILE]");
    const keys = await readKeySet(flag(args, "keys") ?? join(ROOT, "agent-deno/release-keys.json"));
    const r = await verifyDir(dir, keys);
    if (r.problem) {
      console.error(`release in ${dir} does NOT verify: ${r.problem}`);
      return 1;
    }
    console.log(
      `release ${r.manifest!.version} verifies: signed by ${r.signers.join(", ")}, bundle ${r.manifest!.bundle.bytes} bytes matches its SHA-256, valid until ${r.manifest!.expiresAt}`,
    );
    return 0;
  }
  console.error("usage: release keygen | pin | build | verify (see scripts/release.ts)");
  return 64;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error((error as Error).message);
      process.exit(1);
    },
  );
}
