/**
 * `./wellspring-agent ledger verify|export`: the owner's own check of the agent's ledger, and its export (the
 * owner's proof, in the format both verifiers read). Both only read: verify never repairs what it finds (the running agent's `open` cuts
 * a torn log tail; anything else is for a person to look at).
 *
 * verify: both copies (the database and the log) are whole chains signed by this agent's key, the log is the
 * database's receipts in order (it may lack the last batch a crash cut before its fsync), and every receipt the
 * hub acknowledged is in the chain. It names the first bad entry.
 * export: writes the database's receipts to stdout in the log format (protocol/src/receipt.ts).
 */
/// <reference path="./sqlite.d.ts" />
import { DatabaseSync } from "node:sqlite";
import {
  bytesEqual,
  concatBytes,
  decodeLogRecords,
  decodeReceipt,
  encodeLogRecord,
  importReceiptVerifyKey,
  logEntries,
  RECEIPT_VERSION_WITNESS,
  verifyChain,
  type ChainEntry,
  type ChainVerdict,
} from "../../protocol/src/mod.ts";
import { ledgerDir } from "./ledger.ts";
import { stateDir } from "./permissions.ts";

export interface LedgerReport {
  ok: boolean;
  lines: string[];
}

interface Row {
  seq: number;
  body: Uint8Array;
  hash: Uint8Array;
  signature: Uint8Array;
  acked: number;
}

function readDatabase(dir: string): Row[] {
  const db = new DatabaseSync(`${dir}/receipts.sqlite`, { readOnly: true });
  try {
    return db.prepare("SELECT seq, body, hash, signature, countersignature IS NOT NULL AS acked FROM receipts ORDER BY seq").all() as unknown as Row[];
  } finally {
    db.close();
  }
}

function receiptWitness(body: Uint8Array): string | undefined {
  try {
    return decodeReceipt(body).witness;
  } catch {
    return undefined; // a malformed body is reported by the chain's verdict
  }
}

function describe(where: string, v: ChainVerdict): string {
  return v.ok ? `${where}: ${v.count} receipts, chain whole (tail ${v.tail.seq})` : `${where}: BAD at sequence ${v.firstBadSeq} (${v.fault}: ${v.detail})`;
}

export async function verifyLedger(dataDir: string): Promise<LedgerReport> {
  const identity = JSON.parse(await Deno.readTextFile(`${dataDir}/agent.json`)) as { agentId: string; publicKey?: string };
  const key = identity.publicKey ? await importReceiptVerifyKey(identity.publicKey) : null;
  if (!key) return { ok: false, lines: [`Cannot verify ledger: ${dataDir}/agent.json has no public key`] };
  const dir = ledgerDir(stateDir(dataDir));
  let rows: Row[];
  try {
    rows = readDatabase(dir);
  } catch (error) {
    return { ok: false, lines: [`Cannot verify ledger: ${dir}/receipts.sqlite cannot be read (${(error as Error).message})`] };
  }
  const db: ChainEntry[] = rows.map((r) => ({ body: new Uint8Array(r.body), hash: new Uint8Array(r.hash), signature: new Uint8Array(r.signature) }));
  const dbVerdict = await verifyChain(db, { agentId: identity.agentId, key });
  const logBytes = await Deno.readFile(`${dir}/receipts.log`).catch(() => new Uint8Array(0));
  const { records, wholeBytes } = decodeLogRecords(logBytes);
  const logVerdict = await verifyChain(await logEntries(records), { agentId: identity.agentId, key });
  const lines = [`ledger of ${identity.agentId} in ${dir}`, describe("database", dbVerdict), describe("log", logVerdict)];
  let ok = dbVerdict.ok && logVerdict.ok;
  if (wholeBytes < logBytes.length)
    lines.push(`log: ${logBytes.length - wholeBytes} bytes after the last whole record (a write cut by a crash; the agent cuts them at its next start)`);
  const differs = records.findIndex((r, i) => !db[i] || !bytesEqual(r.body, db[i].body) || !bytesEqual(r.signature, db[i].signature));
  if (differs >= 0) {
    ok = false;
    lines.push(`log and database differ at sequence ${differs + 1}`);
  } else if (records.length < db.length) {
    lines.push(`log lacks receipts ${records.length + 1}…${db.length} (the agent appends them again at its next start)`);
  }
  const acked = rows.filter((r) => r.acked).length;
  lines.push(`${acked} of ${rows.length} receipts acknowledged by the hub`);
  const dispatched = db.filter((e) => e.body[0] === RECEIPT_VERSION_WITNESS && receiptWitness(e.body) === "dispatched").length;
  if (dispatched > 0) lines.push(`${dispatched} signed on the hub's dispatch record: the agent's own record of those calls was lost in a crash`);
  lines.push(ok ? "OK" : "FAILED");
  return { ok, lines };
}

/** The database's receipts in the log format (the owner's proof, for the hub operator). */
export function exportLedger(dataDir: string): Uint8Array {
  const rows = readDatabase(ledgerDir(stateDir(dataDir)));
  return concatBytes(rows.map((r) => encodeLogRecord(new Uint8Array(r.body), new Uint8Array(r.signature))));
}

/** One line for `./wellspring-agent status`: the chain's tail and how much of it the hub acknowledged. */
export function ledgerSummary(dataDir: string): string {
  let rows: Row[];
  try {
    rows = readDatabase(ledgerDir(stateDir(dataDir)));
  } catch {
    return "ledger: no receipts yet";
  }
  const acked = rows.filter((r) => r.acked).length;
  return `ledger: ${rows.length} receipts (tail ${rows.length}), ${acked} acknowledged by the hub; ./wellspring-agent ledger verify checks them`;
}
