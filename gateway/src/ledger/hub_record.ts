/**
 * The hub's record of a request, sealed for the edge (docs/protocol.md, "Hub records"). A receipt proves the money
 * of a request; who the user was, which key, plan and credit lease, the overdraft and the request's own record are
 * the hub's business, not the owner's. So the hub seals them (its settlement row and request record, as JSON with
 * the tables' column names) with AES-256-GCM under its rebuild key, sends the sealed bytes with the SETTLEMENT
 * statement, and the agent signs them into the receipt (version 3) and keeps them. The owner holds them and cannot
 * read them; the hub can open them again to rebuild its books from the agents' ledgers
 * (`npm run admin -- rebuild-from-edge`, gateway/src/ledger/rebuild.ts).
 *
 * Sealed form: version u8 (1) · nonce 12 bytes · ciphertext · tag 16 bytes. The plaintext is the JSON
 * `{"v":1,"reservation":{…},"record":{…}|null}`, deflated (raw). The additional data is
 * `"wellspring/hub-record/v1\n" ‖ requestId`, so a sealed record opens only for its own request.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import type pg from "pg";
import { RECEIPT_HUB_RECORD_BYTES_MAX, toBase64Url, type SettlementStatement } from "@wellspring/protocol";
import type { Logger } from "../log.ts";

export const HUB_RECORD_VERSION = 1;
/** The rebuild key's file name in the hub's data folder. */
export const REBUILD_KEY_FILE = "rebuild-key.bin";
/** AES-256 key, bytes. */
export const HUB_RECORD_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const AAD_CONTEXT = "wellspring/hub-record/v1\n";
/** Largest plaintext a sealed record may inflate to, bytes (a bound on what a rebuild reads per receipt). */
export const HUB_RECORD_PLAINTEXT_BYTES_MAX = 64 * 1024;

/**
 * The hub's rebuild key: 32 random bytes made on first start in the data folder (`rebuild-key.bin`, mode 0600)
 * beside the receipt key, so every gateway sharing the data folder seals with the same key. Without it no hub
 * record opens: keep it with the database's backups.
 */
export async function loadRebuildKey(file: string): Promise<Uint8Array> {
  try {
    return await readRebuildKey(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(dirname(file), { recursive: true });
  // wx: two gateways starting at once never overwrite each other's key; the loser reads the winner's.
  await writeFile(file, randomBytes(HUB_RECORD_KEY_BYTES), { flag: "wx", mode: 0o600 }).catch(() => undefined);
  await chmod(file, 0o600);
  return readRebuildKey(file);
}

/** An existing rebuild key (the rebuild reads it and never makes one). */
export async function readRebuildKey(file: string): Promise<Uint8Array> {
  const key = new Uint8Array(await readFile(file));
  if (key.length !== HUB_RECORD_KEY_BYTES) throw new Error(`Cannot use rebuild key: ${file} is not ${HUB_RECORD_KEY_BYTES} bytes`);
  return key;
}

function aad(requestId: string): Buffer {
  return Buffer.from(AAD_CONTEXT + requestId, "utf8");
}

/** The plaintext of a hub record: the settlement row and the request record as JSON texts (column names as keys). */
export function hubRecordJson(reservationJson: string, recordJson: string | null): string {
  return `{"v":${HUB_RECORD_VERSION},"reservation":${reservationJson},"record":${recordJson ?? "null"}}`;
}

export function sealHubRecord(key: Uint8Array, requestId: string, plaintextJson: string): Uint8Array {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad(requestId));
  const body = Buffer.concat([cipher.update(deflateRawSync(Buffer.from(plaintextJson, "utf8"))), cipher.final()]);
  return new Uint8Array(Buffer.concat([Buffer.of(HUB_RECORD_VERSION), nonce, body, cipher.getAuthTag()]));
}

/** The plaintext JSON of a sealed record; null when it does not open (another key, another request, altered). */
export function openHubRecord(key: Uint8Array, requestId: string, sealed: Uint8Array): string | null {
  if (sealed.length < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] !== HUB_RECORD_VERSION) return null;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(1, 1 + NONCE_BYTES));
    decipher.setAAD(aad(requestId));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const deflated = Buffer.concat([decipher.update(sealed.subarray(1 + NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
    return inflateRawSync(deflated, { maxOutputLength: HUB_RECORD_PLAINTEXT_BYTES_MAX }).toString("utf8");
  } catch {
    return null;
  }
}

/**
 * Seals statements' hub records. A statement goes out once its settlement is durable: the settlement row (with what
 * only the database knows: its times, the lease's part, the overdraft) comes back from the settlement's own write
 * (`wellspring_settle_batch` returns it), so it is never read again. A settlement that waits in the spool sends no
 * statement: the hub offers every unreceipted settlement again (`EdgeReceipts.unreceipted`), sealed from the database.
 */
export class HubRecordSealer {
  constructor(
    private readonly pool: pg.Pool,
    private readonly key: Uint8Array,
    private readonly log: Logger,
  ) {}

  /** The statement with its hub record: the settlement row as written and the request record as the proxy made it. */
  seal(statement: SettlementStatement, reservationJson: string, recordJson: string | null): SettlementStatement {
    return this.#with(statement, reservationJson, recordJson);
  }

  /** A statement whose settlement row another statement wrote (a deferred settlement): the row read back, the record as given. */
  async sealWritten(statement: SettlementStatement, recordJson: string | null): Promise<SettlementStatement | null> {
    const reservation = (
      await this.#rows("SELECT request_id AS id, row_to_json(r)::text AS j FROM reservations r WHERE request_id = ANY($1)", [statement.requestId])
    ).get(statement.requestId);
    return reservation === undefined ? null : this.#with(statement, reservation, recordJson);
  }

  /** Statements offered again: their settlement rows and request records read from the database. */
  async sealAll(statements: SettlementStatement[]): Promise<SettlementStatement[]> {
    if (statements.length === 0) return statements;
    const ids = statements.map((s) => s.requestId);
    const reservations = await this.#rows("SELECT request_id AS id, row_to_json(r)::text AS j FROM reservations r WHERE request_id = ANY($1)", ids);
    const records = await this.#rows("SELECT id, row_to_json(r)::text AS j FROM request_records r WHERE id = ANY($1)", ids);
    return statements.flatMap((s) => {
      const reservation = reservations.get(s.requestId);
      return reservation ? [this.#with(s, reservation, records.get(s.requestId) ?? null)] : [];
    });
  }

  #with(statement: SettlementStatement, reservationJson: string, recordJson: string | null): SettlementStatement {
    const sealed = sealHubRecord(this.key, statement.requestId, hubRecordJson(reservationJson, recordJson));
    if (sealed.length <= RECEIPT_HUB_RECORD_BYTES_MAX) return { ...statement, hubRecord: toBase64Url(sealed) };
    // Signed without it: its receipt proves the money, and a rebuild reports the request as not rebuildable.
    this.log.warn("ledger.hub_record_too_large", { requestId: statement.requestId, bytes: sealed.length, max: RECEIPT_HUB_RECORD_BYTES_MAX });
    return statement;
  }

  async #rows(sql: string, ids: string[]): Promise<Map<string, string>> {
    const r = await this.pool.query<{ id: string; j: string }>(sql, [ids]);
    return new Map(r.rows.map((x) => [x.id, x.j]));
  }
}
