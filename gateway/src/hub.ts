/**
 * Boots a hub process's shared parts: the database (DATABASE_URL, or an embedded PostgreSQL when unset),
 * migrations, the hub id and the tunnel TLS identity. Used by `npm start`, `npm run demo` and the gateway —
 * the processes that are the hub. The operator CLI is not: it finds the running hub's database
 * (`cli/database.ts`) and never writes the hub's identity files.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  createDb,
  deployMigrations,
  newId,
  seedPriceTableIfEmpty,
  startEmbeddedPostgres,
  takeOverEmbeddedPostgresSignals,
  type Db,
  type EmbeddedDb,
} from "@wellspring/db";
import type { GatewayEnv } from "./env.ts";
import type { Logger } from "./log.ts";
import { ensureTlsIdentity, type TlsIdentity } from "./tls.ts";

/**
 * `DATA_DIR/hub.json` (mode 0600): how to reach the embedded database of the hub running on this data
 * folder, for `npm run admin`. Written after the embedded server starts, removed at a clean stop; a file
 * left by a killed hub is recognised as stale because its database no longer answers from this folder.
 */
export const HUB_FILE = "hub.json";

export interface HubFile {
  /** Connection string of the embedded server (loopback; the embedded server's fixed local password). */
  databaseUrl: string;
  /** The hub process. */
  pid: number;
  /** UTC, ISO 8601. */
  startedAt: string;
}

export interface HubBase {
  db: Db;
  databaseUrl: string;
  embedded: EmbeddedDb | null;
  hubId: string;
  tls: TlsIdentity;
  dataDir: string;
  close(): Promise<void>;
}

/** What a gateway takes from the hub it runs in: its database, the hub's id and TLS identity, a spool folder in the hub's data. */
export function hubGatewayOptions(hub: HubBase) {
  return { db: hub.db, databaseUrl: hub.databaseUrl, hubId: hub.hubId, tls: hub.tls, spoolDir: join(hub.dataDir, "spool") };
}

/** A connection string without its credentials, for logs: `postgresql://host:port/database`. */
export function databaseLocation(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(unreadable DATABASE_URL)";
  }
}

export async function readHubFile(dataDir: string): Promise<HubFile | null> {
  try {
    const f = JSON.parse(await readFile(join(dataDir, HUB_FILE), "utf8")) as Partial<HubFile>;
    if (typeof f.databaseUrl !== "string" || typeof f.pid !== "number") return null;
    return { databaseUrl: f.databaseUrl, pid: f.pid, startedAt: String(f.startedAt ?? "") };
  } catch {
    return null;
  }
}

/** The caller stops the hub (`close()`) on SIGINT, SIGTERM and SIGHUP: the embedded database is stopped there, last. */
export async function bootHub(opts: {
  databaseUrl?: string;
  dataDir: string;
  hubId?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  log: Logger;
}): Promise<HubBase> {
  const dataDir = resolve(opts.dataDir);
  await mkdir(dataDir, { recursive: true });
  let embedded: EmbeddedDb | null = null;
  let databaseUrl = opts.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres(dataDir);
    takeOverEmbeddedPostgresSignals();
    databaseUrl = embedded.url;
    const file: HubFile = { databaseUrl, pid: process.pid, startedAt: new Date().toISOString() };
    await writeFile(join(dataDir, HUB_FILE), JSON.stringify(file, null, 2) + "\n", { mode: 0o600 });
    opts.log.info("hub.database", {
      mode: "embedded",
      location: databaseLocation(databaseUrl),
      dataDir: join(dataDir, "postgres"),
      note: "DATABASE_URL is unset: using an embedded PostgreSQL; `npm run admin` finds it through DATA_DIR/hub.json",
    });
  } else {
    opts.log.info("hub.database", { mode: "external", location: databaseLocation(databaseUrl) });
  }
  const applied = await deployMigrations(databaseUrl);
  if (applied.length) opts.log.info("hub.migrations_applied", { names: applied });
  const hubId = opts.hubId ?? (await persistentHubId(dataDir));
  const tls = await ensureTlsIdentity({ certFile: opts.tlsCertFile, keyFile: opts.tlsKeyFile, dir: join(dataDir, "tls") });
  const db = createDb(databaseUrl);
  const seeded = await seedPriceTableIfEmpty(db);
  if (seeded !== null) opts.log.info("hub.prices_seeded", { ver: seeded, note: "no price table was published: seeded the public list prices" });
  return {
    db,
    databaseUrl,
    embedded,
    hubId,
    tls,
    dataDir,
    async close() {
      await db.$disconnect();
      if (embedded) {
        await rm(join(dataDir, HUB_FILE), { force: true });
        await embedded.stop();
      }
    },
  };
}

async function persistentHubId(dataDir: string): Promise<string> {
  const file = join(dataDir, "hub-id");
  if (existsSync(file)) return (await readFile(file, "utf8")).trim();
  const id = newId("hub");
  await writeFile(file, id + "\n");
  return id;
}

/**
 * A gateway worker's view of the hub its primary booted (gateway/src/cluster.ts): the database is already running
 * and migrated, the hub id and the tunnel TLS identity already exist, so a worker only connects and reads them.
 */
export async function joinHub(opts: { databaseUrl: string; dataDir: string; hubId: string; tlsCertFile?: string; tlsKeyFile?: string }): Promise<HubBase> {
  const dataDir = resolve(opts.dataDir);
  const tls = await ensureTlsIdentity({ certFile: opts.tlsCertFile, keyFile: opts.tlsKeyFile, dir: join(dataDir, "tls") });
  const db = createDb(opts.databaseUrl);
  return {
    db,
    databaseUrl: opts.databaseUrl,
    embedded: null,
    hubId: opts.hubId,
    tls,
    dataDir,
    async close() {
      await db.$disconnect();
    },
  };
}

/** `bootHub` with the hub's settings from the environment (the gateway, its cluster primary, `npm start`, the demo). */
export function bootHubFromEnv(
  env: Pick<GatewayEnv, "DATABASE_URL" | "DATA_DIR" | "HUB_ID" | "TLS_CERT_FILE" | "TLS_KEY_FILE">,
  log: Logger,
): Promise<HubBase> {
  return bootHub({
    databaseUrl: env.DATABASE_URL,
    dataDir: env.DATA_DIR,
    hubId: env.HUB_ID,
    tlsCertFile: env.TLS_CERT_FILE,
    tlsKeyFile: env.TLS_KEY_FILE,
    log,
  });
}
