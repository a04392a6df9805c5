/**
 * Agent releases as operators publish them: a release (table `agent_releases`) is stored only after it verified
 * against the release keys agents pin; the policy (`agent_release_policy`) names the latest release offered and
 * the minimum version admitted. Each change is one transaction with its audit event and the `releases_changed`
 * hub event, after which every gateway tells its agents (tunnel/releases.ts).
 *
 * The hub is not trusted by agents for code: they verify every release against the keys pinned in their own
 * install, so a compromised hub can withhold updates but not push one (docs/ARCHITECTURE.md).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { compareVersions, PROTOCOL_VERSION, RELEASE_FILES, releaseKeySet, verifyRelease, type ReleaseKeySet } from "@wellspring/protocol";
import { publishHubEvent, type Db } from "@wellspring/db/core";
import { recordAudit, type Actor } from "./audit.ts";

export interface ReleasePolicy {
  latestVersion: string | null;
  minimumVersion: string | null;
}

/** The version refusal an agent gets at the handshake, or null when its version is admitted. */
export function versionRefusal(agentVersion: string | null, policy: ReleasePolicy): string | null {
  if (!policy.minimumVersion) return null;
  let below: boolean;
  try {
    below = agentVersion === null || compareVersions(agentVersion, policy.minimumVersion) < 0;
  } catch {
    below = true; // not a version this hub can compare: it predates versioned releases
  }
  return below ? `agent ${agentVersion ?? "(unknown)"} is below the minimum version ${policy.minimumVersion}: update it` : null;
}

export interface UpdateRequiredNotice {
  version: string | null;
  minimumVersion: string;
  refusedAt: Date;
  /** What the owner's agent page shows. */
  message: string;
}

/**
 * The owner's notice for an agent the hub refused for its version (while that version is still below the
 * minimum), or null.
 */
export function updateRequiredNotice(agent: { version: string | null; versionRefusedAt: Date | null }, policy: ReleasePolicy): UpdateRequiredNotice | null {
  if (!agent.versionRefusedAt || !policy.minimumVersion || versionRefusal(agent.version, policy) === null) return null;
  const at = agent.versionRefusedAt.toISOString().slice(0, 16).replace("T", " ");
  return {
    version: agent.version,
    minimumVersion: policy.minimumVersion,
    refusedAt: agent.versionRefusedAt,
    message:
      `This agent runs version ${agent.version ?? "(unknown)"}; the hub requires ${policy.minimumVersion} or later and refused its connection (last at ${at} UTC), so it serves nothing. ` +
      'An agent whose install pins release keys updates itself within minutes; otherwise install the new version (docs/operations/agent.md, "Updates").',
  };
}

/** The three files of a release folder (a missing signature file reads as empty: refused as unsigned). */
export async function readReleaseDir(dir: string): Promise<PublishInput> {
  const [manifest, signatures, bundle] = await Promise.all([
    readFile(join(dir, RELEASE_FILES.manifest)),
    readFile(join(dir, RELEASE_FILES.signatures)).catch(() => new Uint8Array()),
    readFile(join(dir, RELEASE_FILES.bundle)),
  ]);
  return { manifest, signatures, bundle };
}

/** A release key set file (agent-deno/release-keys.json). */
export async function readKeySet(path: string): Promise<ReleaseKeySet> {
  return releaseKeySet(JSON.parse(await readFile(path, "utf8")) as unknown, path);
}

export interface PublishInput {
  manifest: Uint8Array;
  signatures: Uint8Array;
  bundle: Uint8Array;
}

/**
 * Stores a release after verifying it against `trusted` (the keys agents pin), and optionally makes it the
 * latest and/or raises the minimum; gateways are told at once (hub event), and tell their agents.
 */
export async function publishRelease(
  db: Db,
  files: PublishInput,
  o: { trusted: ReleaseKeySet; publishedBy: Actor; latest: boolean; minimumVersion?: string | null; now?: Date },
): Promise<{ version: string }> {
  // Extra permissions a release asks for are the owners' to approve on their machines, not the hub's to refuse.
  let asked = { net: [] as string[], env: [] as string[] };
  try {
    asked = (JSON.parse(new TextDecoder().decode(files.manifest)) as { permissions?: typeof asked }).permissions ?? asked;
  } catch {
    /* verifyRelease says what is wrong with it */
  }
  const verified = await verifyRelease(files, {
    trusted: o.trusted,
    now: o.now ?? new Date(),
    hubProtocol: PROTOCOL_VERSION,
    approved: asked,
    checkExpiry: true,
  });
  const version = verified.manifest.version;
  const minimum = o.minimumVersion ?? null;
  if (minimum !== null && compareVersions(minimum, version) > 0)
    throw new Error(`Cannot set the minimum to ${minimum}: it is newer than the release being published (${version})`);
  await db.$transaction(async (tx) => {
    await tx.agentRelease.create({
      data: {
        version,
        manifest: new TextDecoder().decode(files.manifest),
        signatures: new TextDecoder().decode(files.signatures),
        bundle: Buffer.from(files.bundle),
        publishedBy: o.publishedBy,
      },
    });
    if (o.latest || minimum !== null) {
      await tx.agentReleasePolicy.update({
        where: { id: 1 },
        data: { ...(o.latest ? { latestVersion: version } : {}), ...(minimum !== null ? { minimumVersion: minimum } : {}) },
      });
    }
    await recordAudit(tx, o.publishedBy, "release.published", `release:${version}`, { latest: o.latest, minimumVersion: minimum, signers: verified.signers });
    await publishHubEvent(tx, { kind: "releases_changed" });
  });
  return { version };
}

/** Sets which release is offered and which versions are admitted (`null` clears one). */
export async function setReleasePolicy(
  db: Db,
  change: { latestVersion?: string | null; minimumVersion?: string | null },
  actor: Actor,
): Promise<ReleasePolicy> {
  return db.$transaction(async (tx) => {
    if (change.latestVersion) {
      const exists = await tx.agentRelease.findUnique({ where: { version: change.latestVersion }, select: { version: true } });
      if (!exists) throw new Error(`Cannot offer ${change.latestVersion}: no such release is published`);
    }
    const row = await tx.agentReleasePolicy.update({ where: { id: 1 }, data: change });
    if (row.latestVersion && row.minimumVersion && compareVersions(row.minimumVersion, row.latestVersion) > 0) {
      throw new Error(`Cannot require ${row.minimumVersion}: the latest release offered is ${row.latestVersion}, so agents could never reach it`);
    }
    await recordAudit(tx, actor, "release.policy_set", "release:policy", change);
    await publishHubEvent(tx, { kind: "releases_changed" });
    return { latestVersion: row.latestVersion, minimumVersion: row.minimumVersion };
  });
}
