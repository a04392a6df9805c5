/**
 * Signed self-update, the launcher's side (docs/operations/agent.md, "Updates"). The serving agent never
 * writes code: it may write only `<data>/state`. Releases live in `<data>/releases`, which only the launcher
 * (and the fetcher it starts, in `releases/staging`) may write:
 *
 *   releases/state.json        what runs: current, previous, the highest version committed, a trial, failures
 *   releases/<version>/        an installed release: manifest.json, manifest.sig, agent.js (verified)
 *   releases/staging/<name>/   a download in progress (removed at every start)
 *   releases/keys.json         a rotated release key set (when a release carried one)
 *   releases/approvals.json    permissions the owner approved for a version (`./wellspring-agent approve-update`)
 *
 * An update: download (fetcher process) → verify signatures, size, hash, expiry, forward-only version, protocol,
 * permissions → move into place (rename) → swap (state.json names it as a trial, written whole by rename) →
 * restart the agent → health check (it reports the release's version, connected) → commit, or roll back to the
 * previous version. Every boot verifies the release it is about to run again, so a kill -9 at any step leaves an
 * agent that boots a verified version (the trial, the current, the previous release, or the installed one).
 */
import {
  compareVersions,
  isVersion,
  PROTOCOL_VERSION,
  RELEASE_FILES,
  releaseKeySet,
  ReleaseRefused,
  type ReleaseKeySet,
  type ReleaseManifest,
  type ReleaseRefusal,
  type UpdateAvailable,
  verifyRelease,
} from "../../protocol/src/mod.ts";

/** A version that failed (refused, or rolled back) is tried again after this long, ms. */
export const UPDATE_RETRY_AFTER_MS = 3_600_000;
/** The started trial must report its version and a ready tunnel within this time, or it is rolled back, ms. */
export const UPDATE_HEALTH_TIMEOUT_MS = 90_000;

export const releasesDir = (dataDir: string) => `${dataDir}/releases`;
export const stagingDir = (dataDir: string) => `${dataDir}/releases/staging`;
const statePath = (dataDir: string) => `${releasesDir(dataDir)}/state.json`;
const keysPath = (dataDir: string) => `${releasesDir(dataDir)}/keys.json`;
const approvalsPath = (dataDir: string) => `${releasesDir(dataDir)}/approvals.json`;

export interface ReleaseState {
  /** The committed release (null: the installed agent). */
  current: string | null;
  /** The release to go back to when a trial fails (null: the installed agent). */
  previous: string | null;
  /** The newest version this agent has committed: nothing older or equal is installed again. */
  highest: string | null;
  /** A release being tried: booted instead of `current` until it is committed or rolled back. */
  trial: { version: string; previous: string | null; startedAt: string } | null;
  failed: Record<string, { at: string; reason: string }>;
}

export const EMPTY_STATE: ReleaseState = { current: null, previous: null, highest: null, trial: null, failed: {} };

export interface UpdateLog {
  (level: "info" | "warn" | "error", event: string, fields?: Record<string, unknown>): void;
}

async function readBytes(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch {
    return null;
  }
}

/** Writes a file whole: to a temporary name, synced, renamed over the target, the folder synced. */
export async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o644 });
  try {
    const data = new TextEncoder().encode(text);
    let off = 0;
    while (off < data.length) off += await f.write(data.subarray(off));
    await f.sync();
  } finally {
    f.close();
  }
  await Deno.rename(tmp, path);
  await syncDir(path.slice(0, path.lastIndexOf("/")));
}

async function syncDir(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    /* not every file system syncs folders; the rename itself is atomic */
  }
}

function validState(raw: unknown): ReleaseState | null {
  if (typeof raw !== "object" || raw === null) return null;
  const r = raw as Record<string, unknown>;
  const v = (x: unknown) => x === null || (typeof x === "string" && isVersion(x));
  if (!v(r.current) || !v(r.previous) || !v(r.highest)) return null;
  const trial = r.trial as ReleaseState["trial"] | undefined;
  if (trial !== null && (typeof trial !== "object" || !isVersion(String(trial?.version)) || !v(trial?.previous ?? null))) return null;
  const failed = typeof r.failed === "object" && r.failed !== null ? (r.failed as ReleaseState["failed"]) : {};
  return { current: r.current as string | null, previous: r.previous as string | null, highest: r.highest as string | null, trial: trial ?? null, failed };
}

export async function readState(dataDir: string, log?: UpdateLog): Promise<ReleaseState> {
  const bytes = await readBytes(statePath(dataDir));
  if (!bytes) return structuredClone(EMPTY_STATE);
  try {
    const s = validState(JSON.parse(new TextDecoder().decode(bytes)));
    if (s) return s;
  } catch {
    /* reported below */
  }
  log?.("error", "launcher.release_state_unreadable", { note: "releases/state.json is not readable: running the installed agent" });
  return structuredClone(EMPTY_STATE);
}

export async function writeState(dataDir: string, state: ReleaseState): Promise<void> {
  await Deno.mkdir(releasesDir(dataDir), { recursive: true, mode: 0o755 });
  await writeAtomic(statePath(dataDir), JSON.stringify(state, null, 2) + "\n");
}

async function readKeySet(path: string): Promise<ReleaseKeySet | null> {
  const bytes = await readBytes(path);
  if (!bytes) return null;
  try {
    return releaseKeySet(JSON.parse(new TextDecoder().decode(bytes)) as unknown, path);
  } catch {
    return null;
  }
}

/**
 * The release keys to trust: the install's pins (`release-keys.json`, imported as a module so the launcher needs
 * no read access to its own folder), or a rotated set with a higher serial.
 */
export async function trustedKeys(installKeys: unknown, dataDir: string): Promise<ReleaseKeySet | null> {
  let installed: ReleaseKeySet | null = null;
  try {
    installed = releaseKeySet(installKeys, "release-keys.json");
  } catch {
    installed = null;
  }
  const rotated = await readKeySet(keysPath(dataDir));
  const best = rotated && (!installed || rotated.serial > installed.serial) ? rotated : installed;
  return best && best.keys.length > 0 ? best : null;
}

export interface Approvals {
  [version: string]: { net: string[]; env: string[]; at: string };
}

export async function readApprovals(dataDir: string): Promise<Approvals> {
  const bytes = await readBytes(approvalsPath(dataDir));
  try {
    return bytes ? (JSON.parse(new TextDecoder().decode(bytes)) as Approvals) : {};
  } catch {
    return {};
  }
}

/** The owner grants a version the extra permissions it asked for (`./wellspring-agent approve-update`). */
export async function approve(dataDir: string, version: string, grant: { net: string[]; env: string[] }): Promise<void> {
  if (!isVersion(version)) throw new Error("--version must be X.Y.Z");
  const approvals = await readApprovals(dataDir);
  approvals[version] = { ...grant, at: new Date().toISOString() };
  await Deno.mkdir(releasesDir(dataDir), { recursive: true, mode: 0o755 });
  await writeAtomic(approvalsPath(dataDir), JSON.stringify(approvals, null, 2) + "\n");
  const state = await readState(dataDir);
  if (state.failed[version]) {
    delete state.failed[version];
    await writeState(dataDir, state);
  }
}

async function releaseFiles(dir: string): Promise<{ manifest: Uint8Array; signatures: Uint8Array; bundle: Uint8Array } | null> {
  const [manifest, signatures, bundle] = await Promise.all([
    readBytes(`${dir}/${RELEASE_FILES.manifest}`),
    readBytes(`${dir}/${RELEASE_FILES.signatures}`),
    readBytes(`${dir}/${RELEASE_FILES.bundle}`),
  ]);
  return manifest && signatures && bundle ? { manifest, signatures, bundle } : null;
}

/** Verifies an installed release before it is booted (expiry aside: it never stops a running agent). */
export async function verifyInstalled(dataDir: string, version: string, keys: ReleaseKeySet, approvals: Approvals): Promise<ReleaseManifest> {
  const files = await releaseFiles(`${releasesDir(dataDir)}/${version}`);
  if (!files) throw new ReleaseRefused("tampered", `release ${version} is incomplete`);
  const v = await verifyRelease(files, { trusted: keys, now: new Date(), expectVersion: version, approved: approvals[version] ?? null, checkExpiry: false });
  return v.manifest;
}

export interface BootTarget {
  /** The module to run: a release's agent.js, or the installed src/main.ts. */
  script: string;
  version: string;
  source: "release" | "install";
  /** The release on trial: it must pass the health check. */
  trial: boolean;
  /** Permissions the release asked for and the owner approved (beyond the launcher's). */
  extra: { net: string[]; env: string[] };
}

/**
 * What to boot: the trial, else the newer of the current release and the installed agent, else the previous
 * release — each only after it verifies; the installed agent when none does.
 */
export async function bootTarget(o: {
  dataDir: string;
  installMain: string;
  installVersion: string;
  keys: ReleaseKeySet | null;
  log: UpdateLog;
}): Promise<BootTarget> {
  const installed: BootTarget = { script: o.installMain, version: o.installVersion, source: "install", trial: false, extra: { net: [], env: [] } };
  if (!o.keys) return installed;
  const state = await readState(o.dataDir, o.log);
  const approvals = await readApprovals(o.dataDir);
  const candidates: { version: string; trial: boolean }[] = [];
  if (state.trial) candidates.push({ version: state.trial.version, trial: true });
  if (state.current && compareVersions(state.current, o.installVersion) > 0) candidates.push({ version: state.current, trial: false });
  if (state.previous && compareVersions(state.previous, o.installVersion) > 0) candidates.push({ version: state.previous, trial: false });
  for (const c of candidates) {
    try {
      const manifest = await verifyInstalled(o.dataDir, c.version, o.keys, approvals);
      return {
        script: `${releasesDir(o.dataDir)}/${c.version}/${RELEASE_FILES.bundle}`,
        version: c.version,
        source: "release",
        trial: c.trial,
        extra: manifest.permissions,
      };
    } catch (error) {
      o.log("error", "launcher.release_invalid", {
        version: c.version,
        reason: (error as ReleaseRefused).reason ?? "unreadable",
        error: (error as Error).message,
        note: "not booted",
      });
    }
  }
  return installed;
}

export class UpdateRefusedError extends Error {
  constructor(
    readonly version: string,
    readonly reason: ReleaseRefusal | "not_found" | "unreachable",
    message: string,
  ) {
    super(message);
    this.name = "UpdateRefusedError";
  }
}

/**
 * Verifies a downloaded release (`staged`, a folder the fetcher filled) and moves it to `releases/<version>`.
 * Refuses anything not signed by a trusted key, whose bundle does not match, that expired, that is not newer
 * than `newerThan`, that speaks another protocol than the hub's, or asks for permissions not approved.
 */
export async function installStaged(o: {
  dataDir: string;
  staged: string;
  version: string;
  keys: ReleaseKeySet;
  newerThan: string;
  hubProtocol: number;
  now: Date;
}): Promise<ReleaseManifest> {
  const files = await releaseFiles(o.staged);
  if (!files) throw new UpdateRefusedError(o.version, "tampered", "the download is incomplete");
  let verified;
  try {
    verified = await verifyRelease(files, {
      trusted: o.keys,
      now: o.now,
      expectVersion: o.version,
      newerThan: o.newerThan,
      hubProtocol: o.hubProtocol,
      approved: (await readApprovals(o.dataDir))[o.version] ?? null,
      checkExpiry: true,
    });
  } catch (error) {
    if (error instanceof ReleaseRefused) throw new UpdateRefusedError(o.version, error.reason, error.message);
    throw error;
  }
  const target = `${releasesDir(o.dataDir)}/${o.version}`;
  await Deno.remove(target, { recursive: true }).catch(() => {});
  await Deno.rename(o.staged, target);
  await syncDir(releasesDir(o.dataDir));
  if (verified.nextKeys) await writeAtomic(keysPath(o.dataDir), JSON.stringify(verified.nextKeys, null, 2) + "\n");
  return verified.manifest;
}

/** Whether to try `offer`'s latest release now: newer than what runs and not refused recently. */
export function wantedVersion(offer: UpdateAvailable | null, state: ReleaseState, installVersion: string, now: number): string | null {
  const latest = offer?.latestVersion;
  if (!latest || !isVersion(latest)) return null;
  const running = state.trial?.version ?? newest(state.current, installVersion);
  if (compareVersions(latest, running) <= 0) return null;
  const failed = state.failed[latest];
  if (failed && now - Date.parse(failed.at) < UPDATE_RETRY_AFTER_MS) return null;
  return latest;
}

/** The newer of a release version (or none) and the installed version. */
export function newest(release: string | null, installVersion: string): string {
  return release && compareVersions(release, installVersion) > 0 ? release : installVersion;
}

/** A trial passed: it is the current release now, the one before it the previous; older releases are removed. */
export async function commitTrial(dataDir: string, version: string): Promise<ReleaseState> {
  const s = await readState(dataDir);
  if (s.trial?.version !== version) return s;
  const next: ReleaseState = { current: version, previous: s.trial.previous, highest: version, trial: null, failed: s.failed };
  delete next.failed[version];
  await writeState(dataDir, next);
  for await (const e of Deno.readDir(releasesDir(dataDir))) {
    if (e.isDirectory && isVersion(e.name) && e.name !== next.current && e.name !== next.previous)
      await Deno.remove(`${releasesDir(dataDir)}/${e.name}`, { recursive: true }).catch(() => {});
  }
  return next;
}

/** A trial failed: back to the release it replaced, the version marked failed (retried after UPDATE_RETRY_AFTER_MS). */
export async function rollBackTrial(dataDir: string, version: string, reason: string): Promise<ReleaseState> {
  const s = await readState(dataDir);
  if (s.trial?.version !== version) return s;
  const next: ReleaseState = { ...s, current: s.trial.previous, trial: null, failed: { ...s.failed, [version]: { at: new Date().toISOString(), reason } } };
  await writeState(dataDir, next);
  await Deno.remove(`${releasesDir(dataDir)}/${version}`, { recursive: true }).catch(() => {});
  return next;
}

/** Records a refused version so it is not downloaded again for a while. */
export async function markFailed(dataDir: string, version: string, reason: string): Promise<void> {
  const s = await readState(dataDir);
  s.failed[version] = { at: new Date().toISOString(), reason };
  await writeState(dataDir, s);
}

/** Makes `version` the trial (the swap): the next boot runs it. */
export async function beginTrial(dataDir: string, version: string): Promise<void> {
  const s = await readState(dataDir);
  await writeState(dataDir, { ...s, trial: { version, previous: s.current, startedAt: new Date().toISOString() } });
}

export { PROTOCOL_VERSION };
