/**
 * The ledger's one writer, in a Worker: every durable commit of `receipts.sqlite` (a receipt batch, the stream
 * records with it, the acknowledgements and disputes that came meanwhile, the pruning of old stream records) runs there, on a connection of its own, so the fsync that `synchronous=FULL`
 * makes at each COMMIT (4–30 ms on a busy disk) blocks the worker's thread, never the agent's event loop. The
 * agent's own connection only reads (WAL: readers see each commit as it lands and never wait for the writer).
 *
 * The worker also signs each batch's receipts, in chain order, just before it commits them: the agent's thread
 * sends bodies encoded with a placeholder where the previous hash goes (RECEIPT_PREV_HASH_OFFSET) and the hash of
 * the chain's tail; the worker links each body to its predecessor, hashes it (SHA-256 over RECEIPT_HASH_CONTEXT ·
 * body) and signs the hash (Ed25519 over RECEIPT_SIGN_CONTEXT · hash) with node:crypto and the agent's key made
 * into a KeyObject once — exactly `signReceiptWith` (protocol/src/receipt.ts), the same bytes (ledger_test.ts
 * checks them against WebCrypto's `signReceipt`). One message per batch, and SHA-256 + Ed25519 (~16% of the
 * agent's samples at load, docs/performance.md) off the thread that carries the tunnel.
 *
 * The worker's code is a string run from a blob URL: the agent ships as one bundled file (scripts/release.ts), so
 * a worker module beside it would not be there. It needs only `node:sqlite` and `node:crypto`, and inherits the
 * agent's permissions (read and write of its state folder); the key crosses as a CryptoKey (structured clone), never
 * as bytes.
 */

/** A receipt to sign and keep: its body with any 32 bytes at RECEIPT_PREV_HASH_OFFSET (the worker links it). */
export interface UnsignedReceipt {
  seq: number;
  requestId: string;
  body: Uint8Array;
}

/** What one batch commits: the stream records, the new receipts, and how far this run has recorded. */
export interface WriterBatch {
  served: { requestId: string; provider: string; startedAtMs: number; endedAtMs: number | null }[];
  /** In chain order, seq following the tail's. */
  receipts: UnsignedReceipt[];
  /** The hash of the chain's last committed receipt (the genesis hash for an empty chain). */
  prevHash: Uint8Array;
  takenAtMs: number;
  runId: number;
  /** Stream records begun before this are deleted with the batch (null: not this time). */
  pruneServedBeforeMs: number | null;
}

/** A committed batch's receipts, in its order: each one's hash (32 bytes) and signature (64 bytes). */
export interface SignedBatch {
  hashes: Uint8Array[];
  signatures: Uint8Array[];
}

/** A receipt's acknowledgement by the hub (its countersignature), or the hub's dispute of it. */
export type LedgerMark = { kind: "ack"; seq: number; countersignature: Uint8Array; nowMs: number } | { kind: "refuse"; seq: number; refused: string };

const WORKER_SOURCE = `
import { DatabaseSync } from "node:sqlite";
import { createHash, KeyObject, sign } from "node:crypto";
let db = null;
let st = null;
let signer = null;
function sealed(m) {
  const hashes = [];
  const signatures = [];
  let prev = m.prevHash;
  for (const r of m.receipts) {
    r.body.set(prev, signer.prevHashOffset);
    const hash = new Uint8Array(createHash("sha256").update(signer.hashContext).update(r.body).digest());
    const message = new Uint8Array(signer.signContext.length + hash.length);
    message.set(signer.signContext);
    message.set(hash, signer.signContext.length);
    hashes.push(hash);
    signatures.push(new Uint8Array(sign(null, message, signer.key)));
    prev = hash;
  }
  return { hashes, signatures };
}
function commit(m) {
  const signed = sealed(m);
  db.exec("BEGIN IMMEDIATE");
  try {
    for (const r of m.served) st.serve.run(r.requestId, r.provider, r.startedAtMs, r.endedAtMs);
    for (let i = 0; i < m.receipts.length; i++) {
      const r = m.receipts[i];
      st.insert.run(r.seq, r.requestId, r.body, signed.hashes[i], signed.signatures[i]);
      st.receipted.run(r.requestId);
    }
    st.run.run(m.takenAtMs, m.runId);
    if (m.pruneServedBeforeMs !== null) st.prune.run(m.pruneServedBeforeMs);
    db.exec("COMMIT");
  } catch (error) {
    db.exec("ROLLBACK");
    throw error;
  }
  return signed;
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
  let result = undefined;
  try {
    if (m.kind === "open") {
      const key = KeyObject.from(m.signer.key);
      if (key.asymmetricKeyType !== "ed25519") throw new TypeError("the agent's key is not an Ed25519 key");
      signer = { key, hashContext: m.signer.hashContext, signContext: m.signer.signContext, prevHashOffset: m.signer.prevHashOffset };
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
      result = commit(m.batch);
    } else if (m.kind === "marks") {
      mark(m.marks);
    } else if (m.kind === "close") {
      db?.close();
      db = null;
    }
    self.postMessage({ id: m.id, ok: true, result });
  } catch (error) {
    self.postMessage({ id: m.id, ok: false, error: String(error && error.message ? error.message : error) });
  }
};
`;

/** The key and the framing the worker signs with (protocol/src/receipt.ts). */
interface SignerSetup {
  key: CryptoKey;
  hashContext: Uint8Array;
  signContext: Uint8Array;
  prevHashOffset: number;
}

type Request =
  { kind: "open"; path: string; signer: SignerSetup } | { kind: "batch"; batch: WriterBatch } | { kind: "marks"; marks: LedgerMark[] } | { kind: "close" };

type Waiting = { resolve: (result: unknown) => void; reject: (e: Error) => void };

/** The agent's side of the writer worker: each call resolves once the worker committed it (rejects with its error). */
export class LedgerWriter {
  readonly #worker: Worker;
  readonly #url: string;
  readonly #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #closed = false;

  private constructor() {
    this.#url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
    this.#worker = new Worker(this.#url, { type: "module" });
    this.#worker.onmessage = (e: MessageEvent<{ id: number; ok: boolean; result?: unknown; error?: string }>) => {
      const w = this.#waiting.get(e.data.id);
      if (!w) return;
      this.#waiting.delete(e.data.id);
      if (e.data.ok) w.resolve(e.data.result);
      else w.reject(new Error(`ledger write failed: ${e.data.error}`));
    };
    this.#worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      const error = new Error(`ledger writer stopped: ${e.message}`);
      for (const w of this.#waiting.values()) w.reject(error);
      this.#waiting.clear();
    };
  }

  /**
   * Starts the worker on the database at `path` (its tables already exist), signing with `privateKey` (Ed25519).
   * `framing`: the receipt format's hash and signature prefixes and where a body's previous hash goes.
   */
  static async open(path: string, privateKey: CryptoKey, framing: { hashContext: string; signContext: string; prevHashOffset: number }): Promise<LedgerWriter> {
    const writer = new LedgerWriter();
    const utf8 = new TextEncoder();
    try {
      await writer.#call({
        kind: "open",
        path,
        signer: {
          key: privateKey,
          hashContext: utf8.encode(framing.hashContext),
          signContext: utf8.encode(framing.signContext),
          prevHashOffset: framing.prevHashOffset,
        },
      });
    } catch (error) {
      writer.#stop();
      throw error;
    }
    return writer;
  }

  /** Signs the batch's receipts in order and commits them with the rest; resolves with their hashes and signatures once durable. */
  async commit(batch: WriterBatch): Promise<SignedBatch> {
    return (await this.#call({ kind: "batch", batch })) as SignedBatch;
  }

  /** Acknowledgements and disputes, applied in order in one transaction. */
  async mark(marks: LedgerMark[]): Promise<void> {
    await this.#call({ kind: "marks", marks });
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

  #call(request: Request): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error("ledger writer is closed"));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...request, id });
    });
  }
}
