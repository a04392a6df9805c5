/**
 * A durable local queue for what the gateway must write to the database but cannot right now (settlements,
 * request records while PostgreSQL is unreachable): an append-only file of JSON lines under
 * `DATA_DIR/spool/`, each append fsync'd before it counts as taken. Entries are replayed to the database when
 * it is back and removed once written (the file is rewritten atomically: temp file, fsync, rename). Replays are
 * idempotent on the database side (a settlement is keyed by its request id; a record by its id), so a crash
 * between writing to the database and removing from the spool repeats a write that changes nothing — each entry
 * lands exactly once.
 *
 * Files are named `<gatewayId>.<kind>.jsonl`. A gateway takes over the files of gateways the ledger knows are
 * dead (stopped, or silent too long), so a crashed gateway's spool is replayed by whoever survives it.
 * Size is bounded by the outage, not configured: a gateway stops claiming credit once its leases are not
 * confirmed (LeaseOptions.validForMs), so only requests already running can still add to it.
 */
import { closeSync, fsyncSync, openSync } from "node:fs";
import { mkdir, open, readdir, readFile, rename, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log.ts";

export interface SpoolCodec<T> {
  encode(item: T): unknown;
  /** Null for a line that is not an entry of this kind (it is dropped with a warning). */
  decode(raw: unknown): T | null;
}

export class Spool<T> {
  readonly #file: string;
  #handle: FileHandle | null = null;
  #items: T[] = [];
  /** File operations run one after another. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly dir: string,
    readonly gatewayId: string,
    readonly kind: string,
    private readonly codec: SpoolCodec<T>,
    private readonly log: Logger,
  ) {
    this.#file = join(dir, `${gatewayId}.${kind}.jsonl`);
  }

  /** Entries waiting to be written to the database, oldest first. */
  get depth(): number {
    return this.#items.length;
  }

  items(): readonly T[] {
    return this.#items;
  }

  /** Creates the folder and loads this gateway's own file (a restart with the same GATEWAY_ID). */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    this.#items = await this.#read(this.#file);
    this.#handle = await open(this.#file, "a", 0o600);
    if (this.#items.length) this.log.warn("spool.loaded", { kind: this.kind, entries: this.#items.length });
  }

  #run<R>(op: () => Promise<R>): Promise<R> {
    const next = this.#queue.then(op, op);
    this.#queue = next.catch(() => {});
    return next;
  }

  async #read(file: string): Promise<T[]> {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
    const out: T[] = [];
    const lines = text.split("\n");
    lines.forEach((line, i) => {
      if (!line) return;
      let item: T | null = null;
      try {
        item = this.codec.decode(JSON.parse(line));
      } catch {
        item = null;
      }
      // A torn last line is a write that was never acknowledged (the process died before its fsync returned).
      if (item === null) {
        if (i !== lines.length - 1) this.log.warn("spool.bad_line", { kind: this.kind, file, line: i + 1 });
        return;
      }
      out.push(item);
    });
    return out;
  }

  /** Appends entries durably: resolves once they are on disk (fsync'd). */
  append(items: readonly T[]): Promise<void> {
    if (items.length === 0) return Promise.resolve();
    const text = items.map((i) => JSON.stringify(this.codec.encode(i))).join("\n") + "\n";
    return this.#run(async () => {
      const handle = this.#handle;
      if (!handle) throw new Error("spool is not open");
      await handle.appendFile(text, "utf8");
      await handle.datasync();
      this.#items.push(...items);
    });
  }

  /** Removes the entries `done` says were written, rewriting the file atomically. */
  remove(done: (item: T) => boolean): Promise<number> {
    return this.#run(async () => {
      const keep = this.#items.filter((i) => !done(i));
      const removed = this.#items.length - keep.length;
      if (removed === 0) return 0;
      const tmp = `${this.#file}.tmp`;
      const out = await open(tmp, "w", 0o600);
      try {
        if (keep.length) await out.writeFile(keep.map((i) => JSON.stringify(this.codec.encode(i))).join("\n") + "\n", "utf8");
        await out.datasync();
      } finally {
        await out.close();
      }
      await this.#handle?.close();
      await rename(tmp, this.#file);
      syncDir(this.dir);
      this.#handle = await open(this.#file, "a", 0o600);
      this.#items = keep;
      return removed;
    });
  }

  /** Other gateways' files of this kind in the folder, by gateway id. */
  async otherFiles(): Promise<string[]> {
    const suffix = `.${this.kind}.jsonl`;
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith(suffix) && n !== `${this.gatewayId}${suffix}`).map((n) => n.slice(0, -suffix.length));
  }

  /**
   * Takes over a dead gateway's file: its entries are appended (durably) to this gateway's file, then its file
   * is removed. A crash in between leaves an entry in both: replaying it twice changes nothing.
   */
  adopt(gatewayId: string): Promise<number> {
    return this.#run(async () => {
      const theirs = join(this.dir, `${gatewayId}.${this.kind}.jsonl`);
      const items = await this.#read(theirs);
      if (items.length) {
        const handle = this.#handle!;
        await handle.appendFile(items.map((i) => JSON.stringify(this.codec.encode(i))).join("\n") + "\n", "utf8");
        await handle.datasync();
        this.#items.push(...items);
      }
      await unlink(theirs).catch(() => {});
      syncDir(this.dir);
      if (items.length) this.log.warn("spool.adopted", { kind: this.kind, from: gatewayId, entries: items.length });
      return items.length;
    });
  }

  async close(): Promise<void> {
    await this.#run(async () => {
      await this.#handle?.close();
      this.#handle = null;
    });
  }
}

/** Makes a rename or unlink in `dir` durable. */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* some file systems refuse fsync on a directory; the rename itself is atomic */
  }
}
