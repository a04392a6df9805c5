/**
 * The release fetcher: a short-lived process the launcher starts to talk to the hub, so the launcher itself
 * never has network access and the serving agent never writes where code lives. Its permissions:
 *
 *   --allow-net=<hub host:port> --allow-read=<data> --allow-write=<data>/releases/staging
 *
 *   release_fetch.ts latest --data <dir>
 *       prints the hub's offer (`GET /agent/v1/releases/latest`) as one JSON line
 *   release_fetch.ts download --data <dir> --version X.Y.Z --out <data>/releases/staging/<name>
 *       writes manifest.json, manifest.sig and agent.js there; reads no more bundle bytes than the manifest
 *       names (and never more than RELEASE_BUNDLE_BYTES_MAX)
 *
 * It verifies nothing but sizes: the launcher checks signatures and hashes before anything is installed.
 * Exit codes: 0 done; 2 the hub has no such release or it is larger than allowed (retrying cannot help);
 * 1 anything else (network, hub down: retried later). Errors are one JSON line on stdout: {ok: false, reason, message}.
 */
import {
  isVersion,
  parseJson,
  RELEASE_BUNDLE_BYTES_MAX,
  RELEASE_FILES,
  RELEASE_MANIFEST_BYTES_MAX,
  releaseManifest,
  updateAvailable,
} from "../../protocol/src/mod.ts";
import { loadIdentity } from "./config.ts";
import { getPinned, ResponseTooLarge } from "./pinned_http.ts";

/** A whole download (manifest, signatures, bundle) may take this long, ms. */
export const RELEASE_DOWNLOAD_TIMEOUT_MS = 300_000;
/** The offer query may take this long, ms. */
export const RELEASE_QUERY_TIMEOUT_MS = 30_000;
export const RELEASES_PATH = "/agent/v1/releases/";

class Refused extends Error {}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

async function get(origin: URL, pins: string[], path: string, bytesMax: number, timeoutMs: number): Promise<Uint8Array> {
  let res;
  try {
    res = await getPinned(origin, pins, path, bytesMax, timeoutMs);
  } catch (error) {
    if (error instanceof ResponseTooLarge) throw new Refused(`oversized: ${path}: ${error.message}`);
    throw error;
  }
  if (res.status === 404) throw new Refused(`not_found: the hub has no ${path}`);
  if (res.status !== 200) throw new Error(`the hub answered ${res.status} for ${path}`);
  return res.body;
}

async function writeFileSynced(path: string, data: Uint8Array): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o644 });
  try {
    let off = 0;
    while (off < data.length) off += await f.write(data.subarray(off));
    await f.sync();
  } finally {
    f.close();
  }
}

async function main(): Promise<number> {
  const [command, ...args] = Deno.args;
  const dataDir = flag(args, "data");
  if (!dataDir) throw new Error("usage: release_fetch.ts latest|download --data <dir> …");
  const identity = await loadIdentity(dataDir);
  const origin = new URL(identity.hubUrl);
  if (command === "latest") {
    const body = await get(origin, identity.pins, `${RELEASES_PATH}latest`, 4096, RELEASE_QUERY_TIMEOUT_MS);
    console.log(JSON.stringify({ ok: true, offer: parseJson(updateAvailable, body) }));
    return 0;
  }
  if (command !== "download") throw new Error("usage: release_fetch.ts latest|download …");
  const version = flag(args, "version") ?? "";
  const out = flag(args, "out") ?? "";
  if (!isVersion(version)) throw new Error("--version must be X.Y.Z");
  if (!out.startsWith(`${dataDir}/releases/staging/`)) throw new Error("--out must be inside <data>/releases/staging");
  const deadline = Date.now() + RELEASE_DOWNLOAD_TIMEOUT_MS;
  const left = () => Math.max(1, deadline - Date.now());
  const base = `${RELEASES_PATH}${version}/`;
  const manifest = await get(origin, identity.pins, base + RELEASE_FILES.manifest, RELEASE_MANIFEST_BYTES_MAX, left());
  const signatures = await get(origin, identity.pins, base + RELEASE_FILES.signatures, RELEASE_MANIFEST_BYTES_MAX, left());
  // The bundle's size as the (not yet verified) manifest states it bounds what is read; the launcher checks the rest.
  let declared = RELEASE_BUNDLE_BYTES_MAX;
  try {
    declared = parseJson(releaseManifest, manifest).bundle.bytes;
  } catch {
    /* the launcher refuses the manifest itself; the bundle is still bounded */
  }
  if (declared > RELEASE_BUNDLE_BYTES_MAX)
    throw new Refused(`oversized: the manifest names a ${declared}-byte bundle; at most ${RELEASE_BUNDLE_BYTES_MAX} are accepted`);
  const bundle = await get(origin, identity.pins, base + RELEASE_FILES.bundle, declared, left());
  await Deno.mkdir(out, { recursive: true });
  await writeFileSynced(`${out}/${RELEASE_FILES.manifest}`, manifest);
  await writeFileSynced(`${out}/${RELEASE_FILES.signatures}`, signatures);
  await writeFileSynced(`${out}/${RELEASE_FILES.bundle}`, bundle);
  console.log(JSON.stringify({ ok: true, version, bytes: manifest.length + signatures.length + bundle.length }));
  return 0;
}

if (import.meta.main) {
  let code = 1;
  try {
    code = await main();
  } catch (error) {
    const refused = error instanceof Refused;
    const message = (error as Error).message;
    console.log(JSON.stringify({ ok: false, reason: refused ? message.split(":")[0] : "unreachable", message }));
    code = refused ? 2 : 1;
  }
  Deno.exit(code);
}
