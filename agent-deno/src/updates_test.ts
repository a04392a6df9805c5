/**
 * The launcher's update state machine, in Deno (its runtime), on a real data folder: what a boot picks when
 * files are damaged, what an install refuses, commit and rollback, and key rotation.
 */
import assert from "node:assert/strict";
import { releaseKeyId, signManifest, toBase64Url, toHex, type ReleaseKeySet, type ReleaseManifest } from "../../protocol/src/mod.ts";
import {
  beginTrial,
  bootTarget,
  commitTrial,
  installStaged,
  readState,
  releasesDir,
  rollBackTrial,
  trustedKeys,
  UpdateRefusedError,
  wantedVersion,
  writeState,
} from "./updates.ts";

interface Key {
  privateKey: CryptoKey;
  keyId: string;
  publicKey: string;
}

async function newKey(): Promise<Key> {
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const publicKey = toBase64Url(new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)));
  return { privateKey: pair.privateKey, publicKey, keyId: await releaseKeyId(publicKey) };
}

const set = (serial: number, ...keys: Key[]): ReleaseKeySet => ({ serial, keys: keys.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey })) });

async function writeRelease(
  dir: string,
  version: string,
  signers: Key[],
  change: Partial<ReleaseManifest> = {},
  bundleText = `console.log("agent ${version}");\n`,
): Promise<void> {
  const bundle = new TextEncoder().encode(bundleText);
  const manifest: ReleaseManifest = {
    format: "wellspring-agent-release/1",
    version,
    protocol: { min: 1, max: 1 },
    bundle: { file: "agent.js", sha256: toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bundle))), bytes: bundle.length },
    createdAt: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
    permissions: { net: [], env: [] },
    releaseKeys: undefined,
    ...change,
  };
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(`${dir}/manifest.json`, bytes);
  await Deno.writeTextFile(
    `${dir}/manifest.sig`,
    JSON.stringify({ signatures: await Promise.all(signers.map(async (k) => ({ keyId: k.keyId, signature: await signManifest(k.privateKey, bytes) }))) }),
  );
  await Deno.writeFile(`${dir}/agent.js`, bundle);
}

const noLog = () => {};

Deno.test("a boot runs the newest release that verifies, and never a damaged one", async () => {
  const data = await Deno.makeTempDir();
  const primary = await newKey();
  const keys = set(1, primary);
  const boot = () => bootTarget({ dataDir: data, installMain: "/install/src/main.ts", installVersion: "0.2.0", keys, log: noLog });
  assert.deepEqual((await boot()).source, "install");
  await writeRelease(`${releasesDir(data)}/0.2.1`, "0.2.1", [primary]);
  await writeRelease(`${releasesDir(data)}/0.2.2`, "0.2.2", [primary]);
  await writeRelease(`${releasesDir(data)}/0.2.3`, "0.2.3", [primary]);
  await writeState(data, {
    current: "0.2.2",
    previous: "0.2.1",
    highest: "0.2.2",
    trial: { version: "0.2.3", previous: "0.2.2", startedAt: new Date().toISOString() },
    failed: {},
  });
  assert.deepEqual([(await boot()).version, (await boot()).trial], ["0.2.3", true]);
  // A damaged trial (one byte of its bundle) is not run: the current release is.
  const bundle = await Deno.readFile(`${releasesDir(data)}/0.2.3/agent.js`);
  bundle[0] = bundle[0] === 0x63 ? 0x64 : 0x63;
  await Deno.writeFile(`${releasesDir(data)}/0.2.3/agent.js`, bundle);
  assert.deepEqual([(await boot()).version, (await boot()).trial], ["0.2.2", false]);
  // A current release with its manifest gone: the previous one.
  await Deno.remove(`${releasesDir(data)}/0.2.2/manifest.json`);
  assert.equal((await boot()).version, "0.2.1");
  // A state file cut in half: the installed agent.
  await Deno.writeTextFile(`${releasesDir(data)}/state.json`, '{"current": "0.2');
  assert.equal((await boot()).source, "install");
  // An installed version newer than the current release wins over it.
  await writeState(data, { current: "0.2.1", previous: null, highest: "0.2.1", trial: null, failed: {} });
  assert.equal((await bootTarget({ dataDir: data, installMain: "/i", installVersion: "0.3.0", keys, log: noLog })).source, "install");
  await Deno.remove(data, { recursive: true });
});

Deno.test("an install refuses what is tampered, older, expired, unsigned, wrongly signed or asks for permissions", async () => {
  const data = await Deno.makeTempDir();
  const primary = await newKey();
  const stranger = await newKey();
  const keys = set(1, primary);
  const staged = `${data}/releases/staging/x`;
  const attempt = async (version: string, make: () => Promise<void>, newerThan = "0.2.0"): Promise<string> => {
    await Deno.remove(staged, { recursive: true }).catch(() => {});
    await make();
    try {
      await installStaged({ dataDir: data, staged, version, keys, newerThan, hubProtocol: 1, now: new Date() });
      return "installed";
    } catch (error) {
      assert.ok(error instanceof UpdateRefusedError, String(error));
      return error.reason;
    }
  };
  assert.equal(
    await attempt("0.3.0", async () => {
      await writeRelease(staged, "0.3.0", [primary]);
      await Deno.writeTextFile(`${staged}/agent.js`, 'console.log("agent 0.3.1");\n');
    }),
    "tampered",
  );
  assert.equal(await attempt("0.1.9", () => writeRelease(staged, "0.1.9", [primary])), "not_newer");
  assert.equal(await attempt("0.3.0", () => writeRelease(staged, "0.3.0", [primary], { expiresAt: new Date(Date.now() - 1000).toISOString() })), "expired");
  assert.equal(await attempt("0.3.0", () => writeRelease(staged, "0.3.0", [])), "unsigned");
  assert.equal(await attempt("0.3.0", () => writeRelease(staged, "0.3.0", [stranger])), "bad_signature");
  assert.equal(await attempt("0.3.0", () => writeRelease(staged, "0.3.0", [primary], { protocol: { min: 2, max: 3 } })), "protocol");
  assert.equal(await attempt("0.3.0", () => writeRelease(staged, "0.3.0", [primary], { permissions: { net: ["evil.example:443"], env: [] } })), "permissions");
  assert.equal(await attempt("0.3.0", () => writeRelease(staged, "0.2.9", [primary])), "wrong_version");
  assert.equal(await attempt("0.3.0", () => writeRelease(staged, "0.3.0", [primary])), "installed");
  assert.ok((await Deno.stat(`${releasesDir(data)}/0.3.0/agent.js`)).isFile);
  await Deno.remove(data, { recursive: true });
});

Deno.test("a trial is committed or rolled back, and a failed version waits before it is tried again", async () => {
  const data = await Deno.makeTempDir();
  const primary = await newKey();
  await writeRelease(`${releasesDir(data)}/0.2.1`, "0.2.1", [primary]);
  await writeRelease(`${releasesDir(data)}/0.2.2`, "0.2.2", [primary]);
  await writeState(data, { current: "0.2.1", previous: null, highest: "0.2.1", trial: null, failed: {} });
  await beginTrial(data, "0.2.2");
  assert.deepEqual((await readState(data)).trial?.previous, "0.2.1");
  await rollBackTrial(data, "0.2.2", "exited before it was ready");
  let s = await readState(data);
  assert.deepEqual([s.current, s.trial, s.failed["0.2.2"]?.reason], ["0.2.1", null, "exited before it was ready"]);
  const offer = { latestVersion: "0.2.2", minimumVersion: null, protocolVersion: 1 };
  assert.equal(wantedVersion(offer, s, "0.2.0", Date.now()), null);
  assert.equal(wantedVersion(offer, s, "0.2.0", Date.now() + 3_600_001), "0.2.2");
  assert.equal(wantedVersion({ ...offer, latestVersion: "0.2.1" }, s, "0.2.0", Date.now()), null);
  await writeRelease(`${releasesDir(data)}/0.2.2`, "0.2.2", [primary]);
  await beginTrial(data, "0.2.2");
  s = await commitTrial(data, "0.2.2");
  assert.deepEqual([s.current, s.previous, s.highest, s.trial, s.failed["0.2.2"]], ["0.2.2", "0.2.1", "0.2.2", null, undefined]);
  await Deno.remove(data, { recursive: true });
});

Deno.test("release keys rotate only with a signature from every key trusted now", async () => {
  const data = await Deno.makeTempDir();
  const [primary, backup, next1, next2] = await Promise.all([newKey(), newKey(), newKey(), newKey()]);
  const installed = set(1, primary, backup);
  const staged = `${data}/releases/staging/r`;
  const rotation = set(2, next1, next2);
  await writeRelease(staged, "0.3.0", [primary], { releaseKeys: rotation });
  await assert.rejects(
    installStaged({ dataDir: data, staged, version: "0.3.0", keys: installed, newerThan: "0.2.0", hubProtocol: 1, now: new Date() }),
    (e: unknown) => e instanceof UpdateRefusedError && e.reason === "key_rotation",
  );
  assert.equal((await trustedKeys(installed, data))!.serial, 1);
  await Deno.remove(staged, { recursive: true });
  await writeRelease(staged, "0.3.0", [primary, backup], { releaseKeys: rotation });
  await installStaged({ dataDir: data, staged, version: "0.3.0", keys: installed, newerThan: "0.2.0", hubProtocol: 1, now: new Date() });
  const trusted = (await trustedKeys(installed, data))!;
  assert.deepEqual([trusted.serial, trusted.keys.map((k) => k.keyId)], [2, [next1.keyId, next2.keyId]]);
  // No pins at all: updates are off.
  assert.equal(await trustedKeys({ serial: 1, keys: [] }, await Deno.makeTempDir()), null);
  await Deno.remove(data, { recursive: true });
});
