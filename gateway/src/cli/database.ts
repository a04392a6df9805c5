/**
 * The database the operator CLI works on. The CLI is not the hub: it never writes the hub's identity files
 * (hub id, tunnel key) and never starts a second server on a data folder a running hub serves.
 *
 *  1. `DATABASE_URL` when set (nothing is written to `DATA_DIR`).
 *  2. Else the embedded database of the hub running on `DATA_DIR`, found through `DATA_DIR/hub.json` and
 *     accepted only when that server answers and serves this very folder.
 *  3. Else (no hub running) the embedded database in `DATA_DIR`, started by the CLI for the command's
 *     duration, as the hub would. A `DATA_DIR` that holds no database yet is refused rather than given a new,
 *     empty one: it is almost always the wrong folder, and the commands would change nothing the hub sees.
 */
import { existsSync } from "node:fs";
import { realpath } from "node:fs/promises";
import { join, resolve } from "node:path";
import pg from "pg";
import { deployMigrations, startEmbeddedPostgres, type EmbeddedDb } from "@wellspring/db";
import { readHubFile } from "../hub.ts";

/** How long the CLI waits for a running hub's database to answer before deciding no hub runs, ms. */
export const HUB_DATABASE_CONNECT_TIMEOUT_MS = 3_000;

export interface OperatorDatabase {
  databaseUrl: string;
  /** Where it came from, for the operator. */
  source: "DATABASE_URL" | "running hub" | "embedded";
  close(): Promise<void>;
}

export async function openOperatorDatabase(opts: { databaseUrl?: string; dataDir: string }): Promise<OperatorDatabase> {
  if (opts.databaseUrl) {
    await deployMigrations(opts.databaseUrl);
    return { databaseUrl: opts.databaseUrl, source: "DATABASE_URL", close: async () => {} };
  }
  const dataDir = resolve(opts.dataDir);
  const hub = await readHubFile(dataDir);
  if (hub && (await servesFolder(hub.databaseUrl, join(dataDir, "postgres")))) {
    return { databaseUrl: hub.databaseUrl, source: "running hub", close: async () => {} };
  }
  if (!existsSync(join(dataDir, "postgres", "PG_VERSION"))) {
    throw new Error(
      `Cannot find the hub's database: no hub is running on DATA_DIR (${dataDir}) and it holds no database. Start the hub (npm start) first, give the DATA_DIR it uses, or set DATABASE_URL.`,
    );
  }
  const embedded: EmbeddedDb = await startEmbeddedPostgres(dataDir);
  try {
    await deployMigrations(embedded.url);
  } catch (error) {
    await embedded.stop();
    throw error;
  }
  return { databaseUrl: embedded.url, source: "embedded", close: () => embedded.stop() };
}

/** True when a PostgreSQL server answers at `url` and keeps its data in `folder`. */
async function servesFolder(url: string, folder: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: HUB_DATABASE_CONNECT_TIMEOUT_MS });
  client.on("error", () => {});
  try {
    await client.connect();
    const r = await client.query<{ data_directory: string }>("SHOW data_directory");
    const served = r.rows[0]?.data_directory;
    return served !== undefined && (await realpath(served).catch(() => served)) === (await realpath(folder).catch(() => folder));
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}
