/**
 * Hot and cold data. `request_records` and `journal_entries` are partitioned by UTC day (migration
 * `partitions_archive_releases`); this module keeps partitions made ahead of time, moves days older than the
 * retention to the archive store, lists and reads archived days, and restores one.
 *
 * A day of one table is archived as a *slice* (table, day, seq): seq 1 is the day's partition; a later seq holds
 * rows of an already archived day that arrived afterwards (they wait in the default partition). Each slice:
 *
 *   1. a manifest row `exporting` (a crashed run finds it and starts the slice over: nothing was removed yet);
 *   2. its totals computed by PostgreSQL (journal: sum and count per account and kind; records: count, charges,
 *      earnings, tokens, bytes);
 *   3. its rows, in primary-key order, as JSON lines (bigints as strings, times in UTC) gzip'd into parts of at
 *      most `partRowsMax` rows, each written to a local file, uploaded, then read back from the store and
 *      checked (object SHA-256, content SHA-256, row count);
 *   4. the manifest (parts, counts, checksums, totals) stored beside the parts;
 *   5. one transaction: the table locked against inserts, the slice counted again and compared with the
 *      manifest, the journal's totals written to `journal_archive_totals`, the manifest row `archived`, and the
 *      rows removed (the day partition dropped; rows in the default partition deleted). Either all of it
 *      happens or none: a kill at any moment leaves the rows in the table or the slice archived, never both,
 *      never neither. Re-running writes the same bytes (same rows, same order, same encoding).
 *
 * Balances and the audit read the journal through `wellspring_account_total` (hot rows + archived totals), so
 * they are the same before and after; the daily rollups (`usage_daily`) and the reservations stay in PostgreSQL.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGunzip, createGzip } from "node:zlib";
import type { Readable } from "node:stream";
import pg from "pg";
import type { Logger } from "../log.ts";
import { observeArchived } from "../observability/metrics.ts";
import type { ArchiveStore } from "./store.ts";

export const ARCHIVE_FORMAT = "wellspring-archive/1";
/** Days a row stays in PostgreSQL before it may be archived (ARCHIVE_AFTER_DAYS), and the least allowed. */
export const ARCHIVE_AFTER_DAYS_DEFAULT = 30;
export const ARCHIVE_AFTER_DAYS_MIN = 2;
/** Rows per archived object (part) at most, and rows read per query while exporting. */
export const ARCHIVE_PART_ROWS_DEFAULT = 1_000_000;
export const ARCHIVE_BATCH_ROWS_DEFAULT = 10_000;
/** Partitions are made this many days ahead of today (UTC). */
export const ARCHIVE_PARTITIONS_AHEAD_DAYS = 7;
/** The final transaction waits at most this long for its table locks, ms (then the slice is tried at the next run). */
export const ARCHIVE_LOCK_TIMEOUT_MS = 10_000;
/** A slice `exporting` for longer than this is reported by the check (a run died and none has run since), ms. */
export const ARCHIVE_STALE_EXPORT_MS = 24 * 3_600_000;
/** Session advisory lock: one archive run at a time across gateways and the CLI. */
const RUN_LOCK_KEY = 0x5753_4152; // "WSAR"

interface TableSpec {
  timeColumn: string;
  /** Primary key columns, in order (keyset pagination and row order). */
  keyColumns: readonly string[];
  /** Columns exported as JSON strings, so no reader parses them into an inexact number. */
  bigintColumns: readonly string[];
}

export const ARCHIVE_TABLES = {
  journal_entries: { timeColumn: "created_at", keyColumns: ["id"], bigintColumns: ["id", "amount_micros"] },
  request_records: {
    timeColumn: "started_at",
    keyColumns: ["id", "started_at"],
    bigintColumns: ["bytes_in", "bytes_out", "user_charge_micros", "owner_earning_micros"],
  },
} as const satisfies Record<string, TableSpec>;
export type ArchiveTable = keyof typeof ARCHIVE_TABLES;
export const ARCHIVE_TABLE_NAMES = Object.keys(ARCHIVE_TABLES) as ArchiveTable[];

export function isArchiveTable(name: string): name is ArchiveTable {
  return Object.hasOwn(ARCHIVE_TABLES, name);
}

/** A journal slice's sums per account and kind. Amounts are decimal strings of micro-units. */
export interface JournalTotals {
  kind: "journal";
  rows: number;
  sumMicros: string;
  /** Transactions of the slice whose entries do not sum to zero (0 in a healthy ledger). */
  unbalancedTransactions: number;
  accounts: { account: string; kind: string; amountMicros: string; entries: number }[];
}

/** A request-record slice's sums. */
export interface RecordTotals {
  kind: "records";
  rows: number;
  userChargeMicros: string;
  ownerEarningMicros: string;
  inputTokens: string;
  outputTokens: string;
  bytesIn: string;
  bytesOut: string;
}

export type SliceTotals = JournalTotals | RecordTotals;

export interface ManifestPart {
  key: string;
  rows: number;
  /** SHA-256 (hex) of the part's JSON lines, and of the stored gzip object. */
  contentSha256: string;
  objectSha256: string;
  bytes: number;
}

/** The manifest object stored beside a slice's parts (and its figures in `archive_manifests`). */
export interface SliceManifest {
  format: typeof ARCHIVE_FORMAT;
  table: ArchiveTable;
  /** UTC day, YYYY-MM-DD. */
  day: string;
  seq: number;
  rows: number;
  /** SHA-256 (hex) of all parts' JSON lines, in order. */
  contentSha256: string;
  parts: ManifestPart[];
  totals: SliceTotals;
  exportedAt: string;
}

export interface ArchiveProgress {
  table: ArchiveTable;
  day: string;
  seq: number;
  phase: "exporting" | "uploaded" | "archived" | "skipped";
  rowsDone: number;
  rowsTotal: number;
  note?: string;
}

export interface ArchiverOptions {
  log: Logger;
  afterDays?: number;
  partRowsMax?: number;
  batchRowsMax?: number;
  /** Where parts are written before upload (a temporary folder by default). */
  workDir?: string;
  now?: () => Date;
  onProgress?: (p: ArchiveProgress) => void;
}

export interface ArchiveRunReport {
  /** False when another run held the lock: nothing was done. */
  ran: boolean;
  archived: { table: ArchiveTable; day: string; seq: number; rows: number }[];
  /** Day partitions past the retention that held no rows: dropped, nothing stored. */
  emptyDaysDropped: number;
  /** Slices left for the next run, with why (e.g. a lock not granted in time, rows changed meanwhile). */
  deferred: { table: ArchiveTable; day: string; seq: number; reason: string }[];
}

export interface ArchivedSlice {
  table: ArchiveTable;
  day: string;
  seq: number;
  status: "exporting" | "archived" | "restored";
  objectKey: string;
  rows: number;
  contentSha256: string;
  objectSha256: string;
  objectBytes: bigint;
  totals: SliceTotals | Record<string, never>;
  parts: ManifestPart[];
  archivedAt: Date | null;
  restoredAt: Date | null;
}

/** YYYY-MM-DD of a Date's UTC day. */
export function utcDay(d: Date): string {
  return d.toISOString().slice(0, 10);
}

function addDays(day: string, n: number): string {
  return utcDay(new Date(Date.parse(`${day}T00:00:00Z`) + n * 86_400_000));
}

function checkDay(day: string): string {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day) || utcDay(new Date(`${day}T00:00:00Z`)) !== day)
    throw new Error(`Cannot use day ${JSON.stringify(day)}: give a UTC date as YYYY-MM-DD`);
  return day;
}

const partitionName = (table: ArchiveTable, day: string) => `${table}_p${day.replaceAll("-", "")}`;
const sliceKey = (table: ArchiveTable, day: string, seq: number) => `${table}/${day.slice(0, 4)}/${day.slice(5, 7)}/${day.slice(8, 10)}.${seq}`;
export const manifestKey = (table: ArchiveTable, day: string, seq: number) => `${sliceKey(table, day, seq)}.manifest.json`;
const partKey = (table: ArchiveTable, day: string, seq: number, part: number) => `${sliceKey(table, day, seq)}.part${String(part).padStart(4, "0")}.jsonl.gz`;

const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

async function fileSha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** What one object holds: its SHA-256, its JSON lines' SHA-256, how many lines, and (optionally) the lines. */
async function readPart(stream: Readable, onLine?: (line: string) => void): Promise<{ objectSha256: string; contentSha256: string; rows: number }> {
  const objectHash = createHash("sha256");
  const contentHash = createHash("sha256");
  const gunzip = createGunzip();
  let rows = 0;
  let rest = "";
  stream.on("data", (c: Buffer) => objectHash.update(c));
  stream.pipe(gunzip);
  for await (const chunk of gunzip) {
    contentHash.update(chunk as Buffer);
    const text = rest + (chunk as Buffer).toString("utf8");
    const lines = text.split("\n");
    rest = lines.pop()!;
    rows += lines.length;
    if (onLine) for (const l of lines) onLine(l);
  }
  if (rest !== "") throw new Error("archived part does not end with a newline");
  return { objectSha256: objectHash.digest("hex"), contentSha256: contentHash.digest("hex"), rows };
}

/** Recomputes a slice's totals from its JSON lines (bigints as strings), for deep verification. */
export class TotalsAccumulator {
  #rows = 0;
  #sum = 0n;
  #accounts = new Map<string, { amount: bigint; entries: number }>();
  #tx = new Map<string, bigint>();
  #rec = { charge: 0n, earning: 0n, input: 0n, output: 0n, bytesIn: 0n, bytesOut: 0n };

  constructor(private readonly table: ArchiveTable) {}

  add(line: string): void {
    const row = JSON.parse(line) as Record<string, unknown>;
    this.#rows++;
    const big = (v: unknown) => (v === null || v === undefined ? 0n : BigInt(v as string | number));
    if (this.table === "journal_entries") {
      const amount = big(row.amount_micros);
      this.#sum += amount;
      const k = `${String(row.account)}\u0000${String(row.kind)}`;
      const a = this.#accounts.get(k) ?? { amount: 0n, entries: 0 };
      a.amount += amount;
      a.entries++;
      this.#accounts.set(k, a);
      const tx = String(row.tx_id);
      this.#tx.set(tx, (this.#tx.get(tx) ?? 0n) + amount);
    } else {
      this.#rec.charge += big(row.user_charge_micros);
      this.#rec.earning += big(row.owner_earning_micros);
      this.#rec.input += big(row.input_tokens);
      this.#rec.output += big(row.output_tokens);
      this.#rec.bytesIn += big(row.bytes_in);
      this.#rec.bytesOut += big(row.bytes_out);
    }
  }

  result(): SliceTotals {
    if (this.table === "journal_entries") {
      return {
        kind: "journal",
        rows: this.#rows,
        sumMicros: this.#sum.toString(),
        unbalancedTransactions: [...this.#tx.values()].filter((v) => v !== 0n).length,
        accounts: [...this.#accounts.entries()]
          .map(([k, v]) => {
            const [account, kind] = k.split("\u0000") as [string, string];
            return { account, kind, amountMicros: v.amount.toString(), entries: v.entries };
          })
          .sort((a, b) => (a.account < b.account ? -1 : a.account > b.account ? 1 : a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0)),
      };
    }
    const r = this.#rec;
    return {
      kind: "records",
      rows: this.#rows,
      userChargeMicros: r.charge.toString(),
      ownerEarningMicros: r.earning.toString(),
      inputTokens: r.input.toString(),
      outputTokens: r.output.toString(),
      bytesIn: r.bytesIn.toString(),
      bytesOut: r.bytesOut.toString(),
    };
  }
}

/** Totals compared field by field (the same slice always yields the same JSON). */
export function sameTotals(a: SliceTotals, b: SliceTotals): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class Archiver {
  readonly afterDays: number;
  readonly partRowsMax: number;
  readonly batchRowsMax: number;
  readonly #now: () => Date;

  constructor(
    private readonly databaseUrl: string,
    private readonly store: ArchiveStore,
    private readonly o: ArchiverOptions,
  ) {
    this.afterDays = o.afterDays ?? ARCHIVE_AFTER_DAYS_DEFAULT;
    if (!Number.isInteger(this.afterDays) || this.afterDays < ARCHIVE_AFTER_DAYS_MIN)
      throw new Error(`Cannot archive: ARCHIVE_AFTER_DAYS must be a whole number of days ≥ ${ARCHIVE_AFTER_DAYS_MIN}`);
    this.partRowsMax = o.partRowsMax ?? ARCHIVE_PART_ROWS_DEFAULT;
    this.batchRowsMax = Math.min(o.batchRowsMax ?? ARCHIVE_BATCH_ROWS_DEFAULT, this.partRowsMax);
    this.#now = o.now ?? (() => new Date());
  }

  get location(): string {
    return this.store.location;
  }

  /** A connection whose session time zone is UTC (JSON times are rendered in it). */
  async #connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.databaseUrl, options: "-c TimeZone=UTC", connectionTimeoutMillis: 10_000 });
    client.on("error", (error) => this.o.log.warn("archive.connection_error", { error }));
    await client.connect();
    return client;
  }

  /** Makes the day partitions of both tables from yesterday to ARCHIVE_PARTITIONS_AHEAD_DAYS ahead (UTC). */
  async ensurePartitions(client?: pg.Client): Promise<void> {
    const c = client ?? (await this.#connect());
    try {
      const today = utcDay(this.#now());
      await c.query("SELECT wellspring_ensure_partitions($1::date, $2::date)", [addDays(today, -1), addDays(today, ARCHIVE_PARTITIONS_AHEAD_DAYS)]);
    } finally {
      if (!client) await c.end();
    }
  }

  /** The last UTC day that may be archived: today − afterDays − 1 (a day is archived once wholly older than the retention). */
  get lastArchivableDay(): string {
    return addDays(utcDay(this.#now()), -this.afterDays - 1);
  }

  /**
   * One run: partitions ahead, then every slice older than the retention (or only `day`, when given — also a
   * day that was restored). Does nothing when another run holds the lock.
   */
  async run(opts: { day?: string; tables?: readonly ArchiveTable[] } = {}): Promise<ArchiveRunReport> {
    const report: ArchiveRunReport = { ran: false, archived: [], emptyDaysDropped: 0, deferred: [] };
    const c = await this.#connect();
    try {
      const locked = await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [RUN_LOCK_KEY]);
      if (!locked.rows[0]!.ok) return report;
      report.ran = true;
      await this.ensurePartitions(c);
      const day = opts.day === undefined ? null : checkDay(opts.day);
      if (day !== null && day > this.lastArchivableDay)
        throw new Error(`Cannot archive ${day}: days up to ${this.lastArchivableDay} may be archived (ARCHIVE_AFTER_DAYS=${this.afterDays})`);
      for (const table of opts.tables ?? ARCHIVE_TABLE_NAMES) {
        for (const slice of await this.#pendingSlices(c, table, day)) {
          const outcome = await this.#archiveSlice(c, table, slice.day, slice.seq);
          if (outcome.archived && outcome.rows === 0) report.emptyDaysDropped++;
          else if (outcome.archived) report.archived.push({ table, day: slice.day, seq: slice.seq, rows: outcome.rows });
          else report.deferred.push({ table, day: slice.day, seq: slice.seq, reason: outcome.reason });
        }
      }
      return report;
    } finally {
      await c.query("SELECT pg_advisory_unlock_all()").catch(() => {});
      await c.end();
    }
  }

  /** The (day, seq) slices of `table` to archive now, oldest first. */
  async #pendingSlices(c: pg.Client, table: ArchiveTable, only: string | null): Promise<{ day: string; seq: number }[]> {
    const spec = ARCHIVE_TABLES[table];
    const last = only ?? this.lastArchivableDay;
    // Days with rows: the day partitions that exist, and days of rows waiting in the default partition.
    const partitions = await c.query<{ day: string }>(
      `SELECT to_char(to_date(substring(child.relname from '_p([0-9]{8})$'), 'YYYYMMDD'), 'YYYY-MM-DD') AS day
       FROM pg_inherits i JOIN pg_class child ON child.oid = i.inhrelid JOIN pg_class parent ON parent.oid = i.inhparent
       WHERE parent.relname = $1 AND child.relname ~ '_p[0-9]{8}$'`,
      [table],
    );
    const late = await c.query<{ day: string }>(
      `SELECT DISTINCT to_char((${spec.timeColumn} AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day FROM ${table}_default
       WHERE ${spec.timeColumn} < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'`,
      [last],
    );
    const days = new Set<string>([...partitions.rows, ...late.rows].map((r) => r.day).filter((d) => (only ? d === only : d <= last)));
    if (only) days.add(only);
    const manifests = await c.query<{ day: string; seq: number; status: string }>(
      "SELECT to_char(day, 'YYYY-MM-DD') AS day, seq, status::text AS status FROM archive_manifests WHERE table_name = $1 ORDER BY day, seq",
      [table],
    );
    const byDay = new Map<string, { seq: number; status: string }[]>();
    for (const m of manifests.rows) byDay.set(m.day, [...(byDay.get(m.day) ?? []), m]);
    const out: { day: string; seq: number }[] = [];
    for (const day of [...days].sort()) {
      const slices = byDay.get(day) ?? [];
      const latest = slices.at(-1);
      // A restored day stays in the table until an operator archives it again by name.
      if (latest?.status === "restored" && !only) continue;
      if (latest?.status === "exporting") out.push({ day, seq: latest.seq });
      else out.push({ day, seq: (latest?.seq ?? 0) + 1 });
    }
    return out;
  }

  /** Sums of one slice as PostgreSQL computes them from the rows in [day, day + 1). */
  async #totals(c: pg.Client, table: ArchiveTable, day: string): Promise<SliceTotals> {
    const col = ARCHIVE_TABLES[table].timeColumn;
    const range = `${col} >= $1::date::timestamp AT TIME ZONE 'UTC' AND ${col} < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'`;
    if (table === "journal_entries") {
      const accounts = await c.query<{ account: string; kind: string; amount: string; entries: number }>(
        `SELECT account, kind, SUM(amount_micros)::text AS amount, COUNT(*)::int AS entries FROM journal_entries WHERE ${range} GROUP BY account, kind ORDER BY account COLLATE "C", kind COLLATE "C"`,
        [day],
      );
      const tx = await c.query<{ n: number }>(
        `SELECT COUNT(*)::int AS n FROM (SELECT tx_id FROM journal_entries WHERE ${range} GROUP BY tx_id HAVING SUM(amount_micros) <> 0) x`,
        [day],
      );
      let sum = 0n;
      let rows = 0;
      for (const a of accounts.rows) {
        sum += BigInt(a.amount);
        rows += a.entries;
      }
      return {
        kind: "journal",
        rows,
        sumMicros: sum.toString(),
        unbalancedTransactions: tx.rows[0]!.n,
        accounts: accounts.rows.map((a) => ({ account: a.account, kind: a.kind, amountMicros: a.amount, entries: a.entries })),
      };
    }
    const r = await c.query<{ rows: number; charge: string; earning: string; input: string; output: string; bytes_in: string; bytes_out: string }>(
      `SELECT COUNT(*)::int AS rows, COALESCE(SUM(user_charge_micros), 0)::text AS charge, COALESCE(SUM(owner_earning_micros), 0)::text AS earning,
              COALESCE(SUM(input_tokens), 0)::text AS input, COALESCE(SUM(output_tokens), 0)::text AS output,
              COALESCE(SUM(bytes_in), 0)::text AS bytes_in, COALESCE(SUM(bytes_out), 0)::text AS bytes_out
       FROM request_records WHERE ${range}`,
      [day],
    );
    const x = r.rows[0]!;
    return {
      kind: "records",
      rows: x.rows,
      userChargeMicros: x.charge,
      ownerEarningMicros: x.earning,
      inputTokens: x.input,
      outputTokens: x.output,
      bytesIn: x.bytes_in,
      bytesOut: x.bytes_out,
    };
  }

  /** The next batch of a slice's rows after `after` (keyset), as JSON lines, with the key of the last row. */
  async #batch(c: pg.Client, table: ArchiveTable, day: string, after: string[] | null): Promise<{ lines: string[]; last: string[] | null }> {
    const spec = ARCHIVE_TABLES[table];
    const col = spec.timeColumn;
    const keys = spec.keyColumns;
    const asText = spec.bigintColumns.map((b) => `'${b}', t.${b}::text`).join(", ");
    const keyOut = keys.map((k, i) => `t.${k}::text AS k${i}`).join(", ");
    const order = keys.map((k) => `t.${k}`).join(", ");
    const keyTypes = table === "journal_entries" ? ["bigint"] : ["text", "timestamptz"];
    const afterClause = after ? `AND (${order}) > (${keys.map((_, i) => `$${i + 3}::${keyTypes[i]}`).join(", ")})` : "";
    const r = await c.query<Record<string, string>>(
      `SELECT ${keyOut}, (to_jsonb(t) || jsonb_build_object(${asText}))::text AS line FROM ${table} t
       WHERE t.${col} >= $1::date::timestamp AT TIME ZONE 'UTC' AND t.${col} < ($1::date + 1)::timestamp AT TIME ZONE 'UTC' ${afterClause}
       ORDER BY ${order} LIMIT $2`,
      [day, this.batchRowsMax, ...(after ?? [])],
    );
    const lastRow = r.rows.at(-1);
    return { lines: r.rows.map((row) => row.line!), last: lastRow ? keys.map((_, i) => lastRow[`k${i}`]!) : null };
  }

  #progress(p: ArchiveProgress): void {
    this.o.onProgress?.(p);
  }

  async #archiveSlice(
    c: pg.Client,
    table: ArchiveTable,
    day: string,
    seq: number,
  ): Promise<{ archived: true; rows: number } | { archived: false; reason: string }> {
    const log = this.o.log;
    const started = Date.now();
    const key = manifestKey(table, day, seq);
    await c.query(
      `INSERT INTO archive_manifests (table_name, day, seq, status, object_key) VALUES ($1, $2, $3, 'exporting', $4)
       ON CONFLICT (table_name, day, seq) DO UPDATE SET started_at = now()`,
      [table, day, seq, key],
    );
    const totals = await this.#totals(c, table, day);
    if (totals.rows === 0) {
      // Nothing to keep (e.g. an empty partition): drop the partition; no manifest remains.
      await this.#finish(c, table, day, seq, null, totals);
      this.#progress({ table, day, seq, phase: "skipped", rowsDone: 0, rowsTotal: 0, note: "no rows" });
      return { archived: true, rows: 0 };
    }
    this.#progress({ table, day, seq, phase: "exporting", rowsDone: 0, rowsTotal: totals.rows });
    const work = this.o.workDir
      ? (await mkdir(this.o.workDir, { recursive: true }), await mkdtemp(join(this.o.workDir, "slice-")))
      : await mkdtemp(join(tmpdir(), "ws-archive-"));
    try {
      const content = createHash("sha256");
      const parts: ManifestPart[] = [];
      let after: string[] | null = null;
      let rows = 0;
      for (let partNo = 1; ; partNo++) {
        const path = join(work, `part${partNo}.jsonl.gz`);
        const partHash = createHash("sha256");
        const gzip = createGzip({ level: 6 });
        const file = createWriteStream(path);
        const written = new Promise<void>((resolve, reject) => {
          file.on("finish", resolve);
          file.on("error", reject);
          gzip.on("error", reject);
        });
        gzip.pipe(file);
        let partRows = 0;
        while (partRows < this.partRowsMax) {
          const batch = await this.#batch(c, table, day, after);
          if (batch.lines.length === 0) break;
          const text = batch.lines.join("\n") + "\n";
          partHash.update(text);
          content.update(text);
          if (!gzip.write(text)) await new Promise((r) => gzip.once("drain", r));
          partRows += batch.lines.length;
          rows += batch.lines.length;
          after = batch.last;
          this.#progress({ table, day, seq, phase: "exporting", rowsDone: rows, rowsTotal: totals.rows });
          if (batch.lines.length < this.batchRowsMax) break;
        }
        gzip.end();
        await written;
        if (partRows === 0) break;
        const bytes = (await stat(path)).size;
        const part: ManifestPart = {
          key: partKey(table, day, seq, partNo),
          rows: partRows,
          contentSha256: partHash.digest("hex"),
          objectSha256: await fileSha256(path),
          bytes,
        };
        await this.store.putFile(part.key, path, bytes);
        // Verify the upload: read the object back and check both checksums and the row count.
        const back = await this.store.get(part.key);
        if (!back) throw new Error(`archive object ${part.key} is missing right after it was stored`);
        const seen = await readPart(back);
        if (seen.objectSha256 !== part.objectSha256 || seen.contentSha256 !== part.contentSha256 || seen.rows !== part.rows) {
          throw new Error(`archive object ${part.key} does not read back as written`);
        }
        parts.push(part);
        await rm(path, { force: true });
        log.info("archive.part_stored", { table, day, seq, part: partNo, rows: part.rows, bytes, key: part.key });
        if (partRows < this.partRowsMax) break;
      }
      if (rows !== totals.rows) return { archived: false, reason: `rows changed while exporting (${rows} exported, ${totals.rows} counted)` };
      const manifest: SliceManifest = {
        format: ARCHIVE_FORMAT,
        table,
        day,
        seq,
        rows,
        contentSha256: content.digest("hex"),
        parts,
        totals,
        exportedAt: this.#now().toISOString(),
      };
      const manifestBytes = new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n");
      await this.store.putBytes(key, manifestBytes);
      const storedManifest = await this.store.getBytes(key);
      if (!storedManifest || sha256(storedManifest) !== sha256(manifestBytes)) throw new Error(`archive manifest ${key} does not read back as written`);
      this.#progress({ table, day, seq, phase: "uploaded", rowsDone: rows, rowsTotal: totals.rows });
      const done = await this.#finish(c, table, day, seq, { manifest, manifestSha256: sha256(manifestBytes) }, totals);
      if (!done.ok) {
        log.warn("archive.deferred", { table, day, seq, reason: done.reason });
        return { archived: false, reason: done.reason };
      }
      observeArchived(table, rows);
      log.info("archive.archived", {
        table,
        day,
        seq,
        rows,
        parts: parts.length,
        bytes: parts.reduce((n, p) => n + p.bytes, 0),
        ms: Date.now() - started,
        lockedMs: done.lockedMs,
        store: this.store.location,
      });
      this.#progress({ table, day, seq, phase: "archived", rowsDone: rows, rowsTotal: totals.rows });
      return { archived: true, rows };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /**
   * The one transaction that moves a slice out: lock, count again, compare, record, remove. With `stored`
   * null the slice is empty and only its (empty) partition goes.
   */
  async #finish(
    c: pg.Client,
    table: ArchiveTable,
    day: string,
    seq: number,
    stored: { manifest: SliceManifest; manifestSha256: string } | null,
    totals: SliceTotals,
  ): Promise<{ ok: true; lockedMs: number } | { ok: false; reason: string }> {
    const partition = partitionName(table, day);
    await c.query("BEGIN");
    try {
      await c.query(`SET LOCAL lock_timeout = ${ARCHIVE_LOCK_TIMEOUT_MS}`);
      const lockedAt = Date.now();
      // The whole table first (then no insert can be waiting on a partition lock we hold): inserts wait, briefly.
      // Both tables are append-only (nothing updates or deletes their rows), so the same count and sum as when
      // the totals were taken (and the rows exported) means the same rows: a full recount under the lock held
      // inserts 1.3 s per million rows of the day, this 0.7–1.0 s in all (docs/operations/database.md).
      await c.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const col = ARCHIVE_TABLES[table].timeColumn;
      const amount = table === "journal_entries" ? "amount_micros" : "user_charge_micros";
      const counted = await c.query<{ rows: number; sum: string }>(
        `SELECT COUNT(*)::int AS rows, COALESCE(SUM(${amount}), 0)::text AS sum FROM ${table}
         WHERE ${col} >= $1::date::timestamp AT TIME ZONE 'UTC' AND ${col} < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'`,
        [day],
      );
      const expectedSum = totals.kind === "journal" ? totals.sumMicros : totals.userChargeMicros;
      if (counted.rows[0]!.rows !== totals.rows || counted.rows[0]!.sum !== expectedSum) {
        await c.query("ROLLBACK");
        return { ok: false, reason: "rows of the day changed after they were exported; exported again at the next run" };
      }
      if (stored) {
        const m = stored.manifest;
        if (m.totals.kind === "journal") {
          for (const a of m.totals.accounts) {
            await c.query("INSERT INTO journal_archive_totals (day, seq, account, kind, amount_micros, entries) VALUES ($1, $2, $3, $4, $5, $6)", [
              day,
              seq,
              a.account,
              a.kind,
              a.amountMicros,
              a.entries,
            ]);
          }
        }
        await c.query(
          `UPDATE archive_manifests SET status = 'archived', rows = $4, content_sha256 = $5, object_sha256 = $6, object_bytes = $7,
             totals = $8::jsonb, archived_at = now(), restored_at = NULL
           WHERE table_name = $1 AND day = $2 AND seq = $3`,
          [
            table,
            day,
            seq,
            m.rows,
            m.contentSha256,
            stored.manifestSha256,
            String(m.parts.reduce((n, p) => n + p.bytes, 0)),
            JSON.stringify({ ...m.totals, parts: m.parts }),
          ],
        );
      } else {
        await c.query("DELETE FROM archive_manifests WHERE table_name = $1 AND day = $2 AND seq = $3", [table, day, seq]);
      }
      const exists = await c.query("SELECT to_regclass($1) AS r", [partition]);
      if ((exists.rows[0] as { r: string | null }).r !== null) await c.query(`DROP TABLE ${partition}`);
      await c.query(
        `DELETE FROM ${table}_default WHERE ${col} >= $1::date::timestamp AT TIME ZONE 'UTC' AND ${col} < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'`,
        [day],
      );
      await c.query("COMMIT");
      return { ok: true, lockedMs: Date.now() - lockedAt };
    } catch (error) {
      await c.query("ROLLBACK").catch(() => {});
      if ((error as { code?: string }).code === "55P03") return { ok: false, reason: `the table lock was not granted within ${ARCHIVE_LOCK_TIMEOUT_MS} ms` };
      throw error;
    }
  }

  /** Every slice the database knows of (archived, restored or being exported), oldest first. */
  async list(table?: ArchiveTable): Promise<ArchivedSlice[]> {
    const c = await this.#connect();
    try {
      return await listSlices(c, table);
    } finally {
      await c.end();
    }
  }

  /**
   * The archived rows of `table` on `day`, as JSON lines (every archived slice, in order), each part checked
   * against its manifest before its lines are handed over.
   */
  async read(table: ArchiveTable, day: string, onLine: (line: string) => void): Promise<{ rows: number; slices: number }> {
    checkDay(day);
    const slices = (await this.list(table)).filter((s) => s.day === day && s.status === "archived");
    if (slices.length === 0) throw new Error(`Cannot read ${table} ${day}: that day is not archived`);
    let rows = 0;
    for (const s of slices) rows += (await this.#readSlice(s, onLine)).rows;
    return { rows, slices: slices.length };
  }

  /** Reads one slice from the store and checks it against the manifest the database recorded. */
  async #readSlice(s: ArchivedSlice, onLine?: (line: string) => void): Promise<{ rows: number; totals: SliceTotals }> {
    const manifestBytes = await this.store.getBytes(s.objectKey);
    if (!manifestBytes) throw new Error(`archive manifest ${s.objectKey} is missing from ${this.store.location}`);
    if (sha256(manifestBytes) !== s.objectSha256) throw new Error(`archive manifest ${s.objectKey} differs from the one recorded when it was archived`);
    const manifest = JSON.parse(new TextDecoder().decode(manifestBytes)) as SliceManifest;
    const acc = new TotalsAccumulator(s.table);
    const content = createHash("sha256");
    let rows = 0;
    for (const part of manifest.parts) {
      const stream = await this.store.get(part.key);
      if (!stream) throw new Error(`archive object ${part.key} is missing from ${this.store.location}`);
      const lines: string[] = [];
      const seen = await readPart(stream, (l) => {
        acc.add(l);
        content.update(l + "\n");
        lines.push(l);
      });
      if (seen.objectSha256 !== part.objectSha256 || seen.contentSha256 !== part.contentSha256 || seen.rows !== part.rows) {
        throw new Error(`archive object ${part.key} does not match its manifest (checksum or row count)`);
      }
      if (onLine) for (const l of lines) onLine(l);
      rows += seen.rows;
    }
    if (rows !== manifest.rows || content.digest("hex") !== manifest.contentSha256)
      throw new Error(`archive ${s.objectKey}: parts do not add up to the manifest`);
    const totals = acc.result();
    if (!sameTotals(totals, manifest.totals)) throw new Error(`archive ${s.objectKey}: its rows do not sum to its manifest totals`);
    return { rows, totals };
  }

  /** Reads every archived slice back from the store and checks it (the archive check's deep mode). */
  async verifyStored(table?: ArchiveTable): Promise<string[]> {
    const problems: string[] = [];
    for (const s of (await this.list(table)).filter((x) => x.status === "archived")) {
      try {
        await this.#readSlice(s);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
    return problems;
  }

  /**
   * Puts an archived day of `table` back into it (every archived slice), after checking each part; its journal
   * totals go in the same transaction, so balances never count the day twice. The day stays hot until archived
   * again by name (`run({ day })`).
   */
  async restore(table: ArchiveTable, day: string): Promise<{ rows: number; slices: number }> {
    checkDay(day);
    const c = await this.#connect();
    try {
      const locked = await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [RUN_LOCK_KEY]);
      if (!locked.rows[0]!.ok) throw new Error("Cannot restore now: an archive run is in progress; try again when it ends");
      const slices = (await listSlices(c, table)).filter((s) => s.day === day && s.status === "archived");
      if (slices.length === 0) throw new Error(`Cannot restore ${table} ${day}: that day is not archived`);
      // Everything is read and checked before anything is written.
      const lines: string[] = [];
      for (const s of slices) await this.#readSlice(s, (l) => lines.push(l));
      await c.query("BEGIN");
      try {
        await c.query("SELECT wellspring_day_partition($1, $2, $3::date)", [table, ARCHIVE_TABLES[table].timeColumn, day]);
        for (let i = 0; i < lines.length; i += this.batchRowsMax) {
          await c.query(`INSERT INTO ${table} SELECT * FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb)`, [
            `[${lines.slice(i, i + this.batchRowsMax).join(",")}]`,
          ]);
        }
        if (table === "journal_entries")
          await c.query("DELETE FROM journal_archive_totals WHERE day = $1 AND seq = ANY($2::int[])", [day, slices.map((s) => s.seq)]);
        await c.query("UPDATE archive_manifests SET status = 'restored', restored_at = now() WHERE table_name = $1 AND day = $2 AND status = 'archived'", [
          table,
          day,
        ]);
        await c.query("COMMIT");
      } catch (error) {
        await c.query("ROLLBACK").catch(() => {});
        throw error;
      }
      this.o.log.info("archive.restored", { table, day, rows: lines.length, slices: slices.length });
      return { rows: lines.length, slices: slices.length };
    } finally {
      await c.query("SELECT pg_advisory_unlock_all()").catch(() => {});
      await c.end();
    }
  }
}

export async function listSlices(c: pg.Client | pg.Pool, table?: ArchiveTable): Promise<ArchivedSlice[]> {
  const r = await c.query<{
    table_name: ArchiveTable;
    day: string;
    seq: number;
    status: ArchivedSlice["status"];
    object_key: string;
    rows: number;
    content_sha256: string;
    object_sha256: string;
    object_bytes: string;
    totals: Record<string, unknown>;
    archived_at: Date | null;
    restored_at: Date | null;
  }>(
    `SELECT table_name, to_char(day, 'YYYY-MM-DD') AS day, seq, status::text AS status, object_key, rows, content_sha256, object_sha256, object_bytes::text AS object_bytes,
            totals, archived_at, restored_at
     FROM archive_manifests ${table ? "WHERE table_name = $1" : ""} ORDER BY day, table_name, seq`,
    table ? [table] : [],
  );
  return r.rows.map((x) => {
    const { parts, ...totals } = x.totals as { parts?: ManifestPart[] } & Record<string, unknown>;
    return {
      table: x.table_name,
      day: x.day,
      seq: x.seq,
      status: x.status,
      objectKey: x.object_key,
      rows: x.rows,
      contentSha256: x.content_sha256,
      objectSha256: x.object_sha256,
      objectBytes: BigInt(x.object_bytes),
      totals: totals as SliceTotals | Record<string, never>,
      parts: parts ?? [],
      archivedAt: x.archived_at,
      restoredAt: x.restored_at,
    };
  });
}
