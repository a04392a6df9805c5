/**
 * The ledger's one writer, in a Worker: every durable commit of `receipts.sqlite` (a receipt batch, the stream
 * records with it, the acknowledgements and disputes that came meanwhile, the pruning of old stream records) runs there, on a connection of its own, so the fsync that `synchronous=FULL`
 * makes at each COMMIT (4–30 ms on a busy disk) blocks the worker's thread, never the agent's event loop. The
 * agent's own connection only reads (WAL: readers see each commit as it lands and never wait for the writer).
 *
 * The worker's code is a string run from a blob URL: the agent ships as one bundled file (scripts/release.ts), so
 * a worker module beside it would not be there. It needs only `node:sqlite` and inherits the agent's permissions
 * (read and write of its state folder).
 */

/** What one batch commits: the stream records, the new receipts, and how far this run has recorded. */
export interface WriterBatch {
  served: { requestId: string; provider: string; startedAtMs: number; endedAtMs: number | null }[];
  receipts: { seq: number; requestId: string; body: Uint8Array; hash: Uint8Array; signature: Uint8Array }[];
  takenAtMs: number;
  runId: number;
  /** Stream records begun before this are deleted with the batch (null: not this time). */
  pruneServedBeforeMs: number | null;
}

/** A receipt's acknowledgement by the hub (its countersignature), or the hub's dispute of it. */
export type LedgerMark = { kind: "ack"; seq: number; countersignature: Uint8Array; nowMs: number } | { kind: "refuse"; seq: number; refused: string };

const WORKER_SOURCE = `
import { DatabaseSync } from "node:sqlite";
let db = null;
let st = null;
function commit(m) {
  db.exec("BEGIN IMMEDIATE");
  try {
    for (const r of m.served) st.serve.run(r.requestId, r.provider, r.startedAtMs, r.endedAtMs);
    for (const r of m.receipts) {
      st.insert.run(r.seq, r.requestId, r.body, r.hash, r.signature);
      st.receipted.run(r.requestId);
    }
    st.run.run(m.takenAtMs, m.runId);
    if (m.pruneServedBeforeMs !== null) st.prune.run(m.pruneServedBeforeMs);
    db.exec("COMMIT");
  } catch (error) {
    db.exec("ROLLBACK");
    throw error;
  }
}
function mark(marks) {
  db.exec("BEGIN IMMEDIATE");
  try {
    for (const m of marks) {
      if (m.kind === "ack") st.ack.run(m.countersignature, m.nowMs, m.seq);
      else st.refuse.run(m.refused, m.seq);
    }
    db.exec("COMMIT");
  } catch (error) {
    db.exec("ROLLBACK");
    throw error;
  }
}
self.onmessage = (e) => {
  const m = e.data;
  try {
    if (m.kind === "open") {
      db = new DatabaseSync(m.path);
      db.exec("PRAGMA journal_mode=WAL");
      db.exec("PRAGMA synchronous=FULL");
      db.exec("PRAGMA busy_timeout=5000");
      st = {
        insert: db.prepare("INSERT INTO receipts (seq, request_id, body, hash, signature) VALUES (?, ?, ?, ?, ?)"),
        serve: db.prepare("INSERT INTO served (request_id, provider, started_at_ms, ended_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET ended_at_ms = excluded.ended_at_ms"),
        receipted: db.prepare("DELETE FROM served WHERE request_id = ?"),
        run: db.prepare("UPDATE runs SET last_batch_ms = ? WHERE id = ?"),
        ack: db.prepare("UPDATE receipts SET countersignature = ?, acked_at_ms = ? WHERE seq = ? AND countersignature IS NULL"),
        refuse: db.prepare("UPDATE receipts SET refused = ? WHERE seq = ? AND countersignature IS NULL"),
        prune: db.prepare("DELETE FROM served WHERE started_at_ms < ?"),
      };
    } else if (m.kind === "batch") {
      commit(m.batch);
    } else if (m.kind === "marks") {
      mark(m.marks);
    } else if (m.kind === "close") {
      db?.close();
      db = null;
    }
    self.postMessage({ id: m.id, ok: true });
  } catch (error) {
    self.postMessage({ id: m.id, ok: false, error: String(error && error.message ? error.message : error) });
  }
};
`;

type Request = { kind: "open"; path: string } | { kind: "batch"; batch: WriterBatch } | { kind: "marks"; marks: LedgerMark[] } | { kind: "close" };

/** The agent's side of the writer worker: each call resolves once the worker committed it (rejects with its error). */
export class LedgerWriter {
  readonly #worker: Worker;
  readonly #url: string;
  readonly #waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #closed = false;

  private constructor() {
    this.#url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
    this.#worker = new Worker(this.#url, { type: "module" });
    this.#worker.onmessage = (e: MessageEvent<{ id: number; ok: boolean; error?: string }>) => {
      const w = this.#waiting.get(e.data.id);
      if (!w) return;
      this.#waiting.delete(e.data.id);
      if (e.data.ok) w.resolve();
      else w.reject(new Error(`ledger write failed: ${e.data.error}`));
    };
    this.#worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      const error = new Error(`ledger writer stopped: ${e.message}`);
      for (const w of this.#waiting.values()) w.reject(error);
      this.#waiting.clear();
    };
  }

  /** Starts the worker on the database at `path` (its tables already exist). */
  static async open(path: string): Promise<LedgerWriter> {
    const writer = new LedgerWriter();
    try {
      await writer.#call({ kind: "open", path });
    } catch (error) {
      writer.#stop();
      throw error;
    }
    return writer;
  }

  commit(batch: WriterBatch): Promise<void> {
    return this.#call({ kind: "batch", batch });
  }

  /** Acknowledgements and disputes, applied in order in one transaction. */
  mark(marks: LedgerMark[]): Promise<void> {
    return this.#call({ kind: "marks", marks });
  }

  /** Closes the worker's connection, then the worker. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#call({ kind: "close" });
    } finally {
      this.#stop();
    }
  }

  #stop(): void {
    this.#closed = true;
    this.#worker.terminate();
    URL.revokeObjectURL(this.#url);
  }

  #call(request: Request): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("ledger writer is closed"));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...request, id });
    });
  }
}
