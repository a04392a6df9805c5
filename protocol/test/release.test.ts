/** Release manifests and signatures in Node (the hub checks a release before it stores it; the launcher, in Deno). */
import { describe, expect, it } from "vitest";
import {
  compareVersions,
  isVersion,
  releaseKeyId,
  ReleaseRefused,
  signManifest,
  toBase64Url,
  toHex,
  updateAvailable,
  verifyRelease,
  type ReleaseManifest,
} from "../src/mod.ts";

async function key() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const publicKey = toBase64Url(new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)));
  return { privateKey: pair.privateKey, publicKey, keyId: await releaseKeyId(publicKey) };
}

describe("releases", () => {
  it("versions compare numerically and only MAJOR.MINOR.PATCH is a version", () => {
    expect(compareVersions("0.10.0", "0.9.9")).toBeGreaterThan(0);
    expect(compareVersions("1.2.3", "1.2.3")).toBe(0);
    expect(compareVersions("1.2.3", "1.3.0")).toBeLessThan(0);
    for (const bad of ["1.2", "01.2.3", "1.2.3-beta", "v1.2.3", "1.2.3.4", ""]) expect(isVersion(bad), bad).toBe(false);
  });

  it("a signed manifest verifies in Node; one changed byte of the manifest or the bundle does not", async () => {
    const k = await key();
    const bundle = new TextEncoder().encode("console.log(1)\n");
    const manifest: ReleaseManifest = {
      format: "wellspring-agent-release/1",
      version: "1.0.0",
      protocol: { min: 1, max: 1 },
      bundle: { file: "agent.js", sha256: toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bundle))), bytes: bundle.length },
      createdAt: "2026-12-01T00:00:00.000Z",
      expiresAt: "2099-01-01T00:00:00.000Z",
      permissions: { net: [], env: [] },
      releaseKeys: undefined,
    };
    const bytes = new TextEncoder().encode(JSON.stringify(manifest));
    const signatures = new TextEncoder().encode(JSON.stringify({ signatures: [{ keyId: k.keyId, signature: await signManifest(k.privateKey, bytes) }] }));
    const trusted = { serial: 1, keys: [{ keyId: k.keyId, publicKey: k.publicKey }] };
    const opts = { trusted, now: new Date("2026-12-02T00:00:00Z"), checkExpiry: true, hubProtocol: 1 };
    expect((await verifyRelease({ manifest: bytes, signatures, bundle }, opts)).signers).toEqual([k.keyId]);
    const reason = (e: unknown) => (e instanceof ReleaseRefused ? e.reason : String(e));
    const changed = Uint8Array.from(bytes);
    const at = new TextDecoder().decode(bytes).indexOf('"version":"1.0.0"') + '"version":"'.length;
    changed[at] = 0x32; // "1.0.0" → "2.0.0": the signature no longer covers it
    await expect(verifyRelease({ manifest: changed, signatures, bundle }, opts).catch(reason)).resolves.toBe("bad_signature");
    await expect(verifyRelease({ manifest: bytes, signatures, bundle: new TextEncoder().encode("console.log(2)\n") }, opts).catch(reason)).resolves.toBe(
      "tampered",
    );
    await expect(verifyRelease({ manifest: bytes, signatures, bundle }, { ...opts, now: new Date("2100-01-01T00:00:00Z") }).catch(reason)).resolves.toBe(
      "expired",
    );
    await expect(verifyRelease({ manifest: bytes, signatures, bundle }, { ...opts, newerThan: "1.0.0" }).catch(reason)).resolves.toBe("not_newer");
  });

  it("the update offer's body is checked", () => {
    expect(updateAvailable({ latestVersion: "1.2.3", minimumVersion: null, protocolVersion: 1 }, "")).toEqual({
      latestVersion: "1.2.3",
      minimumVersion: null,
      protocolVersion: 1,
    });
    expect(() => updateAvailable({ latestVersion: "../x", minimumVersion: null, protocolVersion: 1 }, "")).toThrow(/latestVersion/);
  });
});
