/**
 * Hot and cold data, for operators (docs/operations/database.md):
 *   npm run archive -- run [--day YYYY-MM-DD] [--table journal_entries|request_records]
 *   npm run archive -- list [--table T]
 *   npm run archive -- read --table T --day YYYY-MM-DD      (the day's rows as JSON lines on stdout, checked first)
 *   npm run archive -- restore --day YYYY-MM-DD [--table T] (both tables when --table is not given)
 *   npm run archive -- verify                               (reads every archived day back and checks it)
 * The database is found as `npm run admin` finds it (cli/database.ts); the store is the gateway's (ARCHIVE_*).
 * `run` prints its progress; a run killed at any point is finished by the next one.
 */
import pg from "pg";
import { Archiver, ARCHIVE_TABLE_NAMES, isArchiveTable, type ArchiveProgress, type ArchiveTable } from "../archive/archiver.ts";
import { checkArchive } from "../archive/check.ts";
import { archiveConfigFromEnv } from "../archive/config.ts";
import { parseEnv } from "../env.ts";
import { createLogger } from "../log.ts";
import { openOperatorDatabase } from "./database.ts";

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

function tableFlag(args: string[]): ArchiveTable | undefined {
  const t = flag(args, "table");
  if (t === undefined) return undefined;
  if (!isArchiveTable(t)) throw new Error(`--table must be one of ${ARCHIVE_TABLE_NAMES.join(", ")}`);
  return t;
}

const USAGE =
  "usage: archive run [--day YYYY-MM-DD] [--table T] | list [--table T] | read --table T --day YYYY-MM-DD | restore --day YYYY-MM-DD [--table T] | verify";

/** Progress lines for a long run: each slice's start and end, and every tenth of its rows. */
export function progressPrinter(write: (line: string) => void): (p: ArchiveProgress) => void {
  let lastTenth = -1;
  return (p) => {
    const name = `${p.table} ${p.day} #${p.seq}`;
    if (p.phase === "exporting") {
      const tenth = p.rowsTotal === 0 ? 10 : Math.floor((p.rowsDone / p.rowsTotal) * 10);
      if (p.rowsDone === 0) lastTenth = -1;
      if (tenth === lastTenth) return;
      lastTenth = tenth;
      write(`${name}: exported ${p.rowsDone} of ${p.rowsTotal} rows (${Math.round((p.rowsDone / Math.max(p.rowsTotal, 1)) * 100)}%)`);
    } else if (p.phase === "uploaded") write(`${name}: stored and read back; removing it from the database`);
    else if (p.phase === "archived") write(`${name}: archived (${p.rowsTotal} rows)`);
    else write(`${name}: ${p.note ?? "skipped"}`);
  };
}

export async function runArchiveCommand(archiver: Archiver, pool: pg.Pool, args: string[], write: (line: string) => void): Promise<number> {
  const [command] = args;
  switch (command) {
    case "run": {
      write(`archiving days up to ${archiver.lastArchivableDay} (UTC) to ${archiver.location}`);
      const table = tableFlag(args);
      const report = await archiver.run({ day: flag(args, "day"), tables: table ? [table] : undefined });
      if (!report.ran) {
        write("another archive run is in progress (a gateway or another command): nothing done");
        return 0;
      }
      write(`done: ${report.archived.length} slices archived (${report.archived.reduce((n, s) => n + s.rows, 0)} rows)`);
      for (const d of report.deferred) write(`deferred ${d.table} ${d.day} #${d.seq}: ${d.reason}`);
      return report.deferred.length > 0 ? 1 : 0;
    }
    case "list": {
      const slices = await archiver.list(tableFlag(args));
      if (slices.length === 0) write("nothing archived");
      for (const s of slices) {
        write(
          `${s.day} ${s.table} #${s.seq} ${s.status} rows=${s.rows} bytes=${s.objectBytes} manifest=${s.objectKey}${s.archivedAt ? ` archived=${s.archivedAt.toISOString()}` : ""}${s.restoredAt ? ` restored=${s.restoredAt.toISOString()}` : ""}`,
        );
      }
      return 0;
    }
    case "read": {
      const table = tableFlag(args);
      const day = flag(args, "day");
      if (!table || !day) throw new Error(USAGE);
      const r = await archiver.read(table, day, write);
      process.stderr.write(`${r.rows} rows from ${r.slices} slice(s), checked against their manifests\n`);
      return 0;
    }
    case "restore": {
      const day = flag(args, "day");
      if (!day) throw new Error(USAGE);
      const table = tableFlag(args);
      for (const t of table ? [table] : ARCHIVE_TABLE_NAMES) {
        const archived = (await archiver.list(t)).some((s) => s.day === day && s.status === "archived");
        if (!archived && !table) continue;
        const r = await archiver.restore(t, day);
        write(`${t} ${day}: ${r.rows} rows restored from ${r.slices} slice(s); it stays in the database until \`archive run --day ${day}\``);
      }
      return 0;
    }
    case "verify": {
      const check = await checkArchive(pool, archiver);
      for (const p of check.problems) write(`PROBLEM ${p}`);
      write(
        check.ok
          ? `archive ok: ${check.slicesChecked} slices read back and checked (${
              Object.entries(check.archivedRows)
                .map(([t, n]) => `${t} ${n} rows`)
                .join(", ") || "no rows"
            })`
          : "archive check FAILED",
      );
      return check.ok ? 0 : 1;
    }
    default:
      throw new Error(USAGE);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const env = parseEnv();
  let code = 0;
  try {
    const database = await openOperatorDatabase({ databaseUrl: env.DATABASE_URL, dataDir: env.DATA_DIR });
    const pool = new pg.Pool({ connectionString: database.databaseUrl, max: 2 });
    const config = archiveConfigFromEnv(env);
    const archiver = new Archiver(database.databaseUrl, config.store, {
      log: createLogger({ proc: "archive" }, env.LOG_LEVEL === "info" ? "warn" : env.LOG_LEVEL),
      afterDays: config.afterDays,
      partRowsMax: config.partRowsMax,
      batchRowsMax: config.batchRowsMax,
      onProgress: progressPrinter((l) => console.error(l)),
    });
    try {
      code = await runArchiveCommand(archiver, pool, process.argv.slice(2), (l) => console.log(l));
    } catch (error) {
      console.error((error as Error).message);
      code = 1;
    }
    await pool.end();
    await database.close();
  } catch (error) {
    console.error((error as Error).message);
    code = 1;
  }
  process.exit(code);
}
