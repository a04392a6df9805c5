/**
 * The agent's ledger: one signed, hash-chained receipt per stream it served (protocol/src/receipt.ts), kept
 * twice in its state folder, `<data>/state/ledger/`:
 *
 * - `receipts.sqlite` — node:sqlite in WAL mode with `synchronous=FULL`: a committed batch survives kill -9
 *   and power loss. It also records which receipts the hub acknowledged (with the hub's countersignature).
 * - `receipts.log` — the same receipts as an append-only file of records (`u32 length · body · signature`),
 *   fsync'd once per batch after the database commit. It is the export format, and a second copy that a
 *   verifier compares with the database.
 *
 * Every commit while the ledger is open runs in a worker (ledger_writer.ts), so its fsync never holds the agent's
 * event loop; this side's connection only reads. Receipts are written in batches off the response's critical path: `append` queues the receipt and resolves
 * once its batch is durable in both files. Sequence numbers are given in queue order by the one writer loop,
 * so the chain has no gaps and no forks even when appends race.
 *
 * On open, a log that ends inside a record (a write cut before its fsync) is cut back to its whole records, and
 * receipts the database committed but the log missed (a kill between the commit and the log's fsync) are
 * appended again. A log that disagrees with the database is never repaired: `LedgerCorruptError`.
 */
/// <reference path="./sqlite.d.ts" />
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { LedgerWriter, type LedgerMark } from "./ledger_writer.ts";
import {
  bytesEqual,
  concatBytes,
  decodeLogRecords,
  CRASH_GAP_CLOCK_TOLERANCE_MS,
  CRASH_GAP_MAX_MS,
  CRASH_GAP_SETTLE_LAG_MS,
  decodeReceipt,
  LEDGER_SERVED_FLUSH_MS,
  encodeLogRecord,
  encodeReceipt,
  RECEIPT_GENESIS_HASH,
  RECEIPT_HASH_CONTEXT,
  RECEIPT_PREV_HASH_OFFSET,
  RECEIPT_SIGN_CONTEXT,
  type ChainEntry,
  type ChainTail,
  type Receipt,
  type SignedReceipt,
} from "../../protocol/src/mod.ts";

/** Most receipts written in one database transaction and one log fsync. */
export const LEDGER_BATCH_RECEIPTS_MAX = 256;
/**
 * How long a stream's start or end record waits to share one commit with others, ms (protocol/src/receipt.ts). A
 * durable commit blocks the event loop (4–30 ms on a busy disk), so it must never run on a stream's path, once per
 * stream. A crash within this window loses the record: the run's crash gap covers it (the hub's statement with its
 * dispatch time).
 */
export { LEDGER_SERVED_FLUSH_MS };
/** Most receipts waiting to be written; `append` refuses beyond it (the disk cannot keep up). */
export const LEDGER_QUEUE_RECEIPTS_MAX = 65_536;
/** Crash gaps are kept this long (the hub offers unreceipted settlements of the last 24 h), ms. */
export const CRASH_GAP_KEEP_MS = 2 * 86_400_000;
/**
 * A served stream's record is kept this long after it started when no receipt comes for it, ms: past the hub's
 * re-send window for unreceipted settlements (24 h, gateway/src/ledger/receipts.ts), with a day's margin. Most
 * records never get a receipt (a request that moved no money has no statement), so without this the table grows
 * without bound.
 */
export const SERVED_KEEP_MS = 2 * 86_400_000;
/** Served records older than SERVED_KEEP_MS are deleted at most this often (with a batch's commit), ms. */
export const SERVED_PRUNE_INTERVAL_MS = 60_000;
/** The file beside the database holding when this run last armed a flush of stream records (see `CrashGap`). */
const PENDING_MARK_FILE = "pending.mark";
/** The mark: the agent's clock when it armed the flush (i64), and its clock minus the hub's (i64), ms. */
const PENDING_MARK_BYTES = 16;

export function ledgerDir(stateDir: string): string {
  return `${stateDir}/ledger`;
}

export class LedgerCorruptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LedgerCorruptError";
  }
}

export class LedgerFullError extends Error {
  constructor() {
    super(`Cannot record receipt: ${LEDGER_QUEUE_RECEIPTS_MAX} receipts already wait for the disk`);
    this.name = "LedgerFullError";
  }
}

/** What the ledger needs to make a receipt: everything but its place in the chain. */
export type ReceiptInput = Omit<Receipt, "seq" | "prevHash" | "agentId">;

/** A stream the agent served (or began to), kept until its receipt is written. */
export interface ServedRow {
  requestId: string;
  provider: string;
  startedAtMs: number;
  /** null while it runs (or when the agent died during it). */
  endedAtMs: number | null;
}

/**
 * A stretch of time in which this agent may have served streams it holds no record of, on the hub's clock (UTC
 * epoch ms), so that a hub's dispatch time can be checked against it. A stream's record is committed at most
 * LEDGER_SERVED_FLUSH_MS after it is queued (plus a commit's time), so a crash loses only records queued shortly
 * before it. Each time the ledger arms a flush it writes the moment to `pending.mark` (no fsync: it survives
 * kill -9, not power loss) with its measured offset to the hub's clock. A run that died leaves the gap
 * [max(last committed batch, mark − CRASH_GAP_MAX_MS), mark + CRASH_GAP_MAX_MS]: a record queued earlier than
 * that was committed, or its flush would have armed a later mark. After a power loss the mark may be gone and no
 * gap is recorded: those streams' settlements stay unreceipted (the hub's audit names them).
 */
export interface CrashGap {
  fromMs: number;
  toMs: number;
}

/** A kept receipt with what the hub said about it. */
export interface KeptReceipt extends ChainEntry {
  seq: number;
  requestId: string;
  /** The hub's countersignature, once it acknowledged the receipt; null until then. */
  countersignature: Uint8Array | null;
}

interface Pending {
  input: ReceiptInput;
  resolve: (r: SignedReceipt) => void;
  reject: (e: Error) => void;
}

interface Row {
  seq: number;
  request_id: string;
  body: Uint8Array;
  hash: Uint8Array;
  signature: Uint8Array;
  countersignature: Uint8Array | null;
}

function toKept(r: Row): KeptReceipt {
  return {
    seq: r.seq,
    requestId: r.request_id,
    body: new Uint8Array(r.body),
    hash: new Uint8Array(r.hash),
    signature: new Uint8Array(r.signature),
    countersignature: r.countersignature ? new Uint8Array(r.countersignature) : null,
  };
}

export class AgentLedger {
  readonly #db: DatabaseSync;
  readonly #writer: LedgerWriter;
  readonly #log: Deno.FsFile;
  /** Acknowledgements sent to the writer and not yet committed: reads show them as kept. */
  readonly #pendingAcks = new Map<number, Uint8Array>();
  /** Disputes recorded and not yet committed by the writer. */
  readonly #pendingRefusals = new Set<number>();
  #acking: Promise<void> = Promise.resolve();
  /** Acknowledgements and disputes waiting for the writer's next commit of them. */
  #marks: LedgerMark[] = [];
  #marking = false;
  /** Prepared statements by their SQL: the reads run per request, so each is prepared once. */
  readonly #statements = new Map<string, StatementSync>();
  #tail: ChainTail;
  #queue: Pending[] = [];
  #servedQueue: ServedRow[] = [];
  #servedTimer: ReturnType<typeof setTimeout> | null = null;
  #writing: Promise<void> | null = null;
  #closed = false;

  private constructor(
    db: DatabaseSync,
    writer: LedgerWriter,
    log: Deno.FsFile,
    tail: ChainTail,
    private readonly agentId: string,
    private readonly runId: number,
    private readonly now: () => number,
    mark: Deno.FsFile,
  ) {
    this.#db = db;
    this.#writer = writer;
    this.#log = log;
    this.#tail = tail;
    this.#mark = mark;
  }

  readonly #mark: Deno.FsFile;
  /** This agent's clock minus the hub's, ms (measured at each WELCOME); 0 until known. */
  #hubOffsetMs = 0;
  #lastPruneMs = Number.NEGATIVE_INFINITY;

  /** The hub's clock as last measured: `agentNowMs - hubNowMs` (the WELCOME's serverTimeMs). */
  setHubClockOffset(offsetMs: number): void {
    if (Number.isSafeInteger(offsetMs)) this.#hubOffsetMs = offsetMs;
  }

  /** Records that a flush of stream records is armed now (see `CrashGap`): one small write, no fsync. */
  #writeMark(atMs: number): void {
    const b = new Uint8Array(PENDING_MARK_BYTES);
    const v = new DataView(b.buffer);
    v.setBigInt64(0, BigInt(Math.trunc(atMs)));
    v.setBigInt64(8, BigInt(this.#hubOffsetMs));
    try {
      this.#mark.seekSync(0, Deno.SeekMode.Start);
      this.#mark.writeSync(b);
    } catch {
      // Without the mark a crash leaves no gap: the stream's settlement stays unreceipted (never a wrong receipt).
    }
  }

  /** Opens (or creates) the ledger in `dir`, repairing only what a crash can leave (see the module comment). */
  static async open(dir: string, agentId: string, privateKey: CryptoKey, now: () => number = Date.now): Promise<AgentLedger> {
    await Deno.mkdir(dir, { recursive: true });
    const db = new DatabaseSync(`${dir}/receipts.sqlite`);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("PRAGMA synchronous=FULL");
    db.exec(`CREATE TABLE IF NOT EXISTS receipts (
      seq INTEGER PRIMARY KEY,
      request_id TEXT NOT NULL UNIQUE,
      body BLOB NOT NULL,
      hash BLOB NOT NULL,
      signature BLOB NOT NULL,
      countersignature BLOB,
      acked_at_ms INTEGER
    ) STRICT`);
    // Streams served and not yet receipted: a statement that arrives after a restart still finds its stream.
    db.exec(`CREATE TABLE IF NOT EXISTS served (
      request_id TEXT PRIMARY KEY,
      provider TEXT NOT NULL,
      started_at_ms INTEGER NOT NULL,
      ended_at_ms INTEGER
    ) STRICT`);
    db.exec("CREATE INDEX IF NOT EXISTS served_started ON served (started_at_ms)");
    migrate(db);
    const markPath = `${dir}/${PENDING_MARK_FILE}`;
    const mark = await Deno.open(markPath, { read: true, write: true, create: true });
    const runId = startRun(db, now(), readMark(await Deno.readFile(markPath)));
    // This run has armed nothing yet: an old mark must not widen the next crash's gap.
    mark.truncateSync(0);
    const last = db.prepare("SELECT seq, hash FROM receipts ORDER BY seq DESC LIMIT 1").get() as { seq: number; hash: Uint8Array } | undefined;
    const tail: ChainTail = last ? { seq: last.seq, hash: new Uint8Array(last.hash) } : { seq: 0, hash: RECEIPT_GENESIS_HASH };
    const logPath = `${dir}/receipts.log`;
    const log = await Deno.open(logPath, { read: true, write: true, create: true });
    let writer: LedgerWriter;
    try {
      await reconcileLog(db, log, await Deno.readFile(logPath), tail.seq);
      // The writer signs each batch as it commits it (ledger_writer.ts): the key goes to its worker.
      writer = await LedgerWriter.open(`${dir}/receipts.sqlite`, privateKey, {
        hashContext: RECEIPT_HASH_CONTEXT,
        signContext: RECEIPT_SIGN_CONTEXT,
        prevHashOffset: RECEIPT_PREV_HASH_OFFSET,
      });
    } catch (error) {
      log.close();
      mark.close();
      db.close();
      throw error;
    }
    return new AgentLedger(db, writer, log, tail, agentId, runId, now, mark);
  }

  #sql(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) this.#statements.set(sql, (st = this.#db.prepare(sql)));
    return st;
  }

  /**
   * Whether `atMs` (a hub's dispatch time, on the hub's clock) falls in a crash gap of this ledger, give or take
   * CRASH_GAP_CLOCK_TOLERANCE_MS, and up to CRASH_GAP_SETTLE_LAG_MS after it (a leased request's time is its
   * settlement's).
   */
  inCrashGap(atMs: number): boolean {
    return (
      this.#db
        .prepare("SELECT 1 AS x FROM crash_gaps WHERE from_ms - ? <= ? AND ? <= to_ms + ? LIMIT 1")
        .get(CRASH_GAP_CLOCK_TOLERANCE_MS, atMs, atMs, CRASH_GAP_CLOCK_TOLERANCE_MS + CRASH_GAP_SETTLE_LAG_MS) !== undefined
    );
  }

  /** The crash gaps kept, oldest first. */
  crashGaps(): CrashGap[] {
    return (this.#sql("SELECT from_ms, to_ms FROM crash_gaps ORDER BY from_ms").all() as unknown as { from_ms: number; to_ms: number }[]).map((g) => ({
      fromMs: g.from_ms,
      toMs: g.to_ms,
    }));
  }

  /** Sequence and hash of the last committed receipt (seq 0 and the genesis hash when empty). */
  get tail(): ChainTail {
    return this.#tail;
  }

  /** Receipts waiting for the disk. */
  get queued(): number {
    return this.#queue.length;
  }

  /** The receipt of a request, if there is one (a repeated statement for a request gets the same receipt). */
  byRequest(requestId: string): KeptReceipt | null {
    const row = this.#sql("SELECT seq, request_id, body, hash, signature, countersignature FROM receipts WHERE request_id = ?").get(requestId) as
      Row | undefined;
    return row ? this.#withPendingAck(toKept(row)) : null;
  }

  #withPendingAck(r: KeptReceipt): KeptReceipt {
    const pending = r.countersignature ? undefined : this.#pendingAcks.get(r.seq);
    return pending ? { ...r, countersignature: pending } : r;
  }

  /** Records that a stream started or ended (written with the next batch, off the stream's path). */
  served(row: ServedRow): void {
    if (this.#closed || this.#servedQueue.length >= LEDGER_QUEUE_RECEIPTS_MAX) return;
    this.#servedQueue.push(row);
    // Never committed in the caller's turn: stream records share a commit LEDGER_SERVED_FLUSH_MS later (or the next
    // receipt batch's, whichever comes first).
    if (this.#servedTimer) return;
    this.#writeMark(this.now());
    this.#servedTimer = setTimeout(() => {
      this.#servedTimer = null;
      this.#kick();
    }, LEDGER_SERVED_FLUSH_MS);
  }

  /** A served stream the agent has not receipted yet, as committed. */
  servedRecord(requestId: string): ServedRow | null {
    const r = this.#sql("SELECT provider, started_at_ms, ended_at_ms FROM served WHERE request_id = ?").get(requestId) as
      { provider: string; started_at_ms: number; ended_at_ms: number | null } | undefined;
    return r ? { requestId, provider: r.provider, startedAtMs: r.started_at_ms, endedAtMs: r.ended_at_ms } : null;
  }

  /**
   * Queues a receipt; resolves once it is committed to the database and fsync'd to the log. A request that
   * already has a receipt resolves with the receipt it has, whatever `input` says (never a second one).
   */
  append(input: ReceiptInput): Promise<SignedReceipt> {
    if (this.#closed) return Promise.reject(new Error("Cannot record receipt: the ledger is closed"));
    if (this.#queue.length >= LEDGER_QUEUE_RECEIPTS_MAX) return Promise.reject(new LedgerFullError());
    return new Promise((resolve, reject) => {
      this.#queue.push({ input, resolve, reject });
      this.#kick();
    });
  }

  /** Starts the one writer loop unless it runs; a receipt queued while it was finishing starts it again. */
  #kick(): void {
    if (this.#writing) return;
    this.#writing = this.#drain().finally(() => {
      this.#writing = null;
      if (this.#queue.length > 0) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#servedQueue.length > 0) {
      const batch = this.#queue.splice(0, LEDGER_BATCH_RECEIPTS_MAX);
      try {
        await this.#writeBatch(batch);
      } catch (error) {
        for (const p of batch) p.reject(error as Error);
      }
    }
  }

  async #writeBatch(batch: Pending[]): Promise<void> {
    const takenAtMs = this.now();
    const served = this.#servedQueue.splice(0, this.#servedQueue.length);
    let seq = this.#tail.seq;
    // Each request's receipt: one kept already, or a new one (index into `fresh`) signed by the writer.
    const outcome: { p: Pending; kept: SignedReceipt | null; fresh: number }[] = [];
    const fresh: Receipt[] = [];
    const inBatch = new Map<string, number>();
    for (const p of batch) {
      const already = inBatch.get(p.input.requestId);
      const kept = already === undefined ? this.#existing(p.input.requestId) : null;
      if (kept || already !== undefined) {
        outcome.push({ p, kept, fresh: already ?? -1 });
        continue;
      }
      // Encoded here with the genesis hash as a placeholder: the writer links it to its predecessor as it signs.
      fresh.push({ ...p.input, seq: ++seq, prevHash: RECEIPT_GENESIS_HASH, agentId: this.agentId });
      inBatch.set(p.input.requestId, fresh.length - 1);
      outcome.push({ p, kept: null, fresh: fresh.length - 1 });
    }
    const signed: SignedReceipt[] = [];
    if (fresh.length > 0 || served.length > 0) {
      const bodies = fresh.map((r) => encodeReceipt(r));
      // One transaction in the writer worker (the signing and the fsync off this event loop). `takenAtMs`: what
      // this run has recorded reaches this far; after a crash, streams begun later have no record.
      const { hashes, signatures } = await this.#writer.commit({
        served: served.filter((r) => !this.#hasReceipt(r.requestId)),
        receipts: fresh.map((r, i) => ({ seq: r.seq, requestId: r.requestId, body: bodies[i]! })),
        prevHash: this.#tail.hash,
        takenAtMs,
        runId: this.runId,
        pruneServedBeforeMs: takenAtMs - this.#lastPruneMs >= SERVED_PRUNE_INTERVAL_MS ? takenAtMs - SERVED_KEEP_MS : null,
      });
      if (takenAtMs - this.#lastPruneMs >= SERVED_PRUNE_INTERVAL_MS) this.#lastPruneMs = takenAtMs;
      let prevHash = this.#tail.hash;
      for (let i = 0; i < fresh.length; i++) {
        const body = bodies[i]!;
        body.set(prevHash, RECEIPT_PREV_HASH_OFFSET);
        signed.push({ receipt: { ...fresh[i]!, prevHash }, body, hash: hashes[i]!, signature: signatures[i]! });
        prevHash = hashes[i]!;
      }
      if (fresh.length > 0) this.#tail = { seq, hash: prevHash };
      if (fresh.length > 0) {
        await writeAll(this.#log, concatBytes(signed.map((s) => encodeLogRecord(s.body, s.signature))));
        await this.#log.syncData();
      }
    }
    for (const o of outcome) o.p.resolve(o.kept ?? signed[o.fresh]!);
  }

  #hasReceipt(requestId: string): boolean {
    return this.#sql("SELECT 1 AS x FROM receipts WHERE request_id = ?").get(requestId) !== undefined;
  }

  #existing(requestId: string): SignedReceipt | null {
    const kept = this.byRequest(requestId);
    if (!kept) return null;
    return { receipt: decodeReceipt(kept.body), body: kept.body, hash: kept.hash, signature: kept.signature };
  }

  /** Records the hub's acknowledgement of a receipt; false when `seq` is not a receipt here or its hash differs. */
  acknowledge(seq: number, hash: Uint8Array, countersignature: Uint8Array, nowMs: number): boolean {
    const row = this.#sql("SELECT hash FROM receipts WHERE seq = ?").get(seq) as { hash: Uint8Array } | undefined;
    if (!row || !bytesEqual(new Uint8Array(row.hash), hash)) return false;
    // Committed by the writer soon after; until then reads show it. Lost in a crash, the receipt is claimed
    // again and the hub acknowledges it again (it keeps one copy).
    if (this.#pendingAcks.has(seq)) return true;
    this.#pendingAcks.set(seq, countersignature);
    this.#queueMark({ kind: "ack", seq, countersignature, nowMs });
    return true;
  }

  /**
   * Records that the hub kept a receipt in its chain but disputes it (`refused`: why); false when `seq` is not a
   * receipt here or its hash differs. A disputed receipt is not claimed again: the hub holds it, and the dispute is
   * for the owner and the operator to settle (docs/protocol.md, "Disputed receipts").
   */
  markRefused(seq: number, hash: Uint8Array, refused: string): boolean {
    const row = this.#sql("SELECT hash FROM receipts WHERE seq = ?").get(seq) as { hash: Uint8Array } | undefined;
    if (!row || !bytesEqual(new Uint8Array(row.hash), hash)) return false;
    // Committed by the writer (in order with acknowledgements); until then `unacknowledged` leaves it out. Lost in a
    // crash, the receipt is claimed again and the hub answers it the same way.
    if (this.#pendingRefusals.has(seq)) return true;
    this.#pendingRefusals.add(seq);
    this.#queueMark({ kind: "refuse", seq, refused });
    return true;
  }

  /**
   * Acknowledgements and disputes reach the writer in the order they came; those that came while a commit ran
   * share the next one (one worker message and one fsync for many, not one per request).
   */
  #queueMark(mark: LedgerMark): void {
    this.#marks.push(mark);
    if (this.#marking) return;
    this.#marking = true;
    this.#acking = this.#acking.then(async () => {
      while (this.#marks.length) {
        const marks = this.#marks.splice(0, this.#marks.length);
        await this.#writer.mark(marks).catch(() => {});
        for (const m of marks) {
          if (m.kind === "ack") this.#pendingAcks.delete(m.seq);
          else this.#pendingRefusals.delete(m.seq);
        }
      }
      this.#marking = false;
    });
  }

  /** Receipts the hub disputes, oldest first, at most `limit`. */
  disputed(limit: number): { seq: number; requestId: string; refused: string }[] {
    return (
      this.#sql("SELECT seq, request_id, refused FROM receipts WHERE refused IS NOT NULL ORDER BY seq LIMIT ?").all(limit) as unknown as {
        seq: number;
        request_id: string;
        refused: string;
      }[]
    ).map((r) => ({ seq: r.seq, requestId: r.request_id, refused: r.refused }));
  }

  /** Receipts the hub has not acknowledged nor disputed, oldest first, at most `limit` (what a CLAIM re-sends). */
  unacknowledged(limit: number): KeptReceipt[] {
    const rows = this.#db
      .prepare(
        "SELECT seq, request_id, body, hash, signature, countersignature FROM receipts WHERE countersignature IS NULL AND refused IS NULL ORDER BY seq LIMIT ?",
      )
      .all(limit + this.#pendingAcks.size + this.#pendingRefusals.size) as unknown as Row[];
    return rows
      .filter((r) => !this.#pendingAcks.has(r.seq) && !this.#pendingRefusals.has(r.seq))
      .slice(0, limit)
      .map(toKept);
  }

  /** Receipts from `fromSeq` on, in order, at most `limit`. */
  range(fromSeq: number, limit: number): KeptReceipt[] {
    const rows = this.#db
      .prepare("SELECT seq, request_id, body, hash, signature, countersignature FROM receipts WHERE seq >= ? ORDER BY seq LIMIT ?")
      .all(fromSeq, limit) as unknown as Row[];
    return rows.map((r) => this.#withPendingAck(toKept(r)));
  }

  /** Waits for queued receipts, then closes both files. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#servedTimer) clearTimeout(this.#servedTimer);
    this.#servedTimer = null;
    if (this.#servedQueue.length > 0) this.#kick();
    await this.#writing;
    await this.#acking;
    await this.#writer.close();
    this.#sql("UPDATE runs SET clean = 1 WHERE id = ?").run(this.runId);
    this.#log.close();
    this.#mark.close();
    this.#db.close();
  }
}

/** What `pending.mark` holds; null when it holds nothing whole (no flush armed, or lost with the machine). */
function readMark(bytes: Uint8Array): { atMs: number; hubOffsetMs: number } | null {
  if (bytes.length < PENDING_MARK_BYTES) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, PENDING_MARK_BYTES);
  const atMs = Number(v.getBigInt64(0));
  const hubOffsetMs = Number(v.getBigInt64(8));
  return atMs > 0 && Number.isSafeInteger(atMs) && Number.isSafeInteger(hubOffsetMs) ? { atMs, hubOffsetMs } : null;
}

/**
 * Schema changes of this file, by `PRAGMA user_version`. 1: crash gaps are bounded and on the hub's clock; the
 * unbounded gaps of earlier versions (from the last batch to the restart, on the agent's clock) are dropped.
 * 2: receipts the hub refused are marked (`refused`), so they are not claimed again.
 */
function migrate(db: DatabaseSync): void {
  const version = (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
  if (version < 1) db.exec("DROP TABLE IF EXISTS crash_gaps");
  if (version < 2) {
    const cols = db.prepare("PRAGMA table_info(receipts)").all() as unknown as { name: string }[];
    if (!cols.some((c) => c.name === "refused")) db.exec("ALTER TABLE receipts ADD COLUMN refused TEXT");
  }
  if (version < 2) db.exec("PRAGMA user_version = 2");
}

/**
 * Records this run, and the crash gap the previous one left when it did not close cleanly (see `CrashGap`).
 * Returns the run's id.
 */
function startRun(db: DatabaseSync, nowMs: number, mark: { atMs: number; hubOffsetMs: number } | null): number {
  db.exec(`CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at_ms INTEGER NOT NULL,
    last_batch_ms INTEGER NOT NULL,
    clean INTEGER NOT NULL DEFAULT 0
  ) STRICT`);
  db.exec("CREATE TABLE IF NOT EXISTS crash_gaps (from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL) STRICT");
  db.exec("BEGIN IMMEDIATE");
  try {
    const prev = db.prepare("SELECT last_batch_ms, clean FROM runs ORDER BY id DESC LIMIT 1").get() as { last_batch_ms: number; clean: number } | undefined;
    if (prev && prev.clean === 0 && mark && mark.atMs + CRASH_GAP_MAX_MS >= prev.last_batch_ms) {
      const fromMs = Math.max(prev.last_batch_ms, mark.atMs - CRASH_GAP_MAX_MS) - mark.hubOffsetMs;
      const toMs = mark.atMs + CRASH_GAP_MAX_MS - mark.hubOffsetMs;
      db.prepare("INSERT INTO crash_gaps (from_ms, to_ms) VALUES (?, ?)").run(fromMs, toMs);
    }
    db.prepare("DELETE FROM crash_gaps WHERE to_ms < ?").run(nowMs - CRASH_GAP_KEEP_MS);
    db.prepare("DELETE FROM runs").run();
    const id = Number(db.prepare("INSERT INTO runs (started_at_ms, last_batch_ms) VALUES (?, ?)").run(nowMs, nowMs).lastInsertRowid);
    db.exec("COMMIT");
    return id;
  } catch (error) {
    db.exec("ROLLBACK");
    throw error;
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let o = 0;
  while (o < bytes.length) o += await file.write(bytes.subarray(o));
}

/**
 * Brings the log up to the database after a crash: cut a torn tail, append what the database committed and the
 * log missed. Every record the log keeps must be the database's receipt at that position.
 */
async function reconcileLog(db: DatabaseSync, log: Deno.FsFile, bytes: Uint8Array, dbTailSeq: number): Promise<void> {
  const { records, wholeBytes } = decodeLogRecords(bytes);
  if (records.length > dbTailSeq) throw new LedgerCorruptError(`Cannot open ledger: the log holds ${records.length} receipts, the database ${dbTailSeq}`);
  const rows = db.prepare("SELECT seq, body, signature FROM receipts ORDER BY seq").iterate() as Iterable<{
    seq: number;
    body: Uint8Array;
    signature: Uint8Array;
  }>;
  let i = 0;
  const missing: Uint8Array[] = [];
  for (const row of rows) {
    if (row.seq !== i + 1) throw new LedgerCorruptError(`Cannot open ledger: the database skips from receipt ${i} to ${row.seq}`);
    const rec = records[i];
    if (rec) {
      if (!bytesEqual(rec.body, new Uint8Array(row.body)) || !bytesEqual(rec.signature, new Uint8Array(row.signature)))
        throw new LedgerCorruptError(`Cannot open ledger: the log's receipt ${row.seq} differs from the database's`);
    } else {
      missing.push(encodeLogRecord(new Uint8Array(row.body), new Uint8Array(row.signature)));
    }
    i++;
  }
  if (wholeBytes < bytes.length || missing.length > 0) {
    await log.truncate(wholeBytes);
    await log.seek(wholeBytes, Deno.SeekMode.Start);
    await writeAll(log, concatBytes(missing));
    await log.syncData();
  } else {
    await log.seek(0, Deno.SeekMode.End);
  }
}
