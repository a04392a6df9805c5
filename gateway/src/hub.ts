/**
 * Boots a hub process's shared parts: the database (DATABASE_URL, or an embedded PostgreSQL when unset),
 * migrations, the hub id and the tunnel TLS identity. Used by `npm start`, `npm run demo` and the gateway.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createDb, deployMigrations, newId, seedPriceTableIfEmpty, startEmbeddedPostgres, type Db, type EmbeddedDb } from "@wellspring/db";
import type { Logger } from "./log.ts";
import { ensureTlsIdentity, type TlsIdentity } from "./tls.ts";

export interface HubBase {
  db: Db;
  databaseUrl: string;
  embedded: EmbeddedDb | null;
  hubId: string;
  tls: TlsIdentity;
  dataDir: string;
  close(): Promise<void>;
}

export async function bootHub(opts: { databaseUrl?: string; dataDir: string; hubId?: string; tlsCertFile?: string; tlsKeyFile?: string; log: Logger }): Promise<HubBase> {
  const dataDir = resolve(opts.dataDir);
  await mkdir(dataDir, { recursive: true });
  let embedded: EmbeddedDb | null = null;
  let databaseUrl = opts.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres(dataDir);
    databaseUrl = embedded.url;
    opts.log.info("hub.database", { mode: "embedded", note: "DATABASE_URL is unset: using an embedded PostgreSQL", dataDir });
  } else {
    opts.log.info("hub.database", { mode: "external" });
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
      await embedded?.stop();
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
