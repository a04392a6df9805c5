/**
 * `npm run admin -- rebuild-from-edge --from FILE…|DIR`: the hub's books rebuilt from its agents' ledgers
 * (docs/operations/admin-cli.md, "Rebuild from the edge"). Each file is one agent's `./wellspring-agent ledger
 * export`. Its chain is verified from the first receipt (canonical bodies, the agent's signatures with the key the
 * hub enrolled, sequence and links: `verifyChain`); every verified receipt whose hub record opens with the hub's
 * rebuild key and agrees with what the agent signed gives back, for its request, the settlement row
 * (`reservations`) and the request record (`request_records`) as the hub wrote them; the journal entries and the
 * day's rollup (`usage_daily`) are posted from the settlement row as the settlement function posts them, and the
 * wallets of the users concerned are recomputed from the journal.
 *
 * Into an empty database only (no settlement, request record, rollup or settlement journal entry), unless told:
 * the rebuild then leaves every request already there as it is. What it cannot verify it reports per agent (the
 * first bad sequence; receipts from there on are not rebuilt) and per receipt (no hub record, a record that does not
 * open, a record that disagrees with the receipt).
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type pg from "pg";
import { decodeLogRecords, decodeReceipt, importReceiptVerifyKey, logEntries, verifyChain, type Receipt } from "@wellspring/protocol";
import { openHubRecord } from "./hub_record.ts";

/** Receipts written to the database in one transaction, most. */
export const REBUILD_BATCH_RECEIPTS_MAX = 500;
/** Progress is printed after this many receipts… */
export const REBUILD_PROGRESS_EVERY_RECEIPTS = 1_000;
/** …or this long since the last line, ms. */
export const REBUILD_PROGRESS_EVERY_MS = 5_000;
/** Receipts named one by one in the report (per agent); the rest are counted. */
export const REBUILD_REPORT_RECEIPTS_MAX = 20;

export interface RebuildOptions {
  pool: pg.Pool;
  /** The hub's rebuild key (`DATA_DIR/rebuild-key.bin`). */
  rebuildKey: Uint8Array;
  /** Export files, or folders whose files are exports. */
  from: string[];
  /** Rebuild into a database that already holds settlements (requests already there are left as they are). */
  intoNonEmpty?: boolean;
  /** Called with each progress line. */
  progress?: (line: string) => void;
  now?: () => number;
}

interface NotRebuilt {
  seq: number;
  requestId: string;
  reason: string;
}

export interface AgentRebuild {
  file: string;
  agentId: string | null;
  /** Whole records in the file. */
  receipts: number;
  /** Receipts before the first bad one. */
  verified: number;
  rebuilt: number;
  /** The first sequence that does not verify, and why; null when the whole chain verifies. */
  firstBadSeq: number | null;
  fault: string | null;
  notRebuilt: NotRebuilt[];
}

export interface RebuildReport {
  ok: boolean;
  agents: AgentRebuild[];
  rebuilt: number;
  users: number;
  lines: string[];
}

export class RebuildRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RebuildRefusedError";
  }
}

/** A receipt ready to write: its request's settlement row and record, as the hub sealed them (JSON text). */
interface Ready {
  receipt: Receipt;
  plaintext: string;
}

interface HubRows {
  reservation?: Record<string, unknown>;
  record?: Record<string, unknown> | null;
}

async function exportFiles(from: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of from) {
    if ((await stat(path)).isDirectory()) {
      for (const name of (await readdir(path)).sort()) if ((await stat(join(path, name))).isFile()) files.push(join(path, name));
    } else files.push(path);
  }
  return files;
}

/** Usage rows already in the target: a rebuild goes into an empty database unless told. */
async function usageRows(pool: pg.Pool): Promise<number> {
  const r = await pool.query<{ n: number }>(
    `SELECT ((SELECT count(*) FROM reservations) + (SELECT count(*) FROM request_records) + (SELECT count(*) FROM usage_daily)
       + (SELECT count(*) FROM journal_entries WHERE kind IN ('usage', 'earning', 'margin')))::int AS n`,
  );
  return r.rows[0]!.n;
}

/**
 * Why a hub record cannot stand for its receipt; null when it agrees with every field the agent signed. The agent's
 * signed figures are the authority for the money: a sealed row that says otherwise is not rebuilt.
 */
function disagreement(r: Receipt, rows: HubRows): string | null {
  const s = rows.reservation;
  if (!s) return "the hub record has no settlement row";
  const pairs: [string, unknown, unknown][] = [
    ["request_id", s.request_id, r.requestId],
    ["agent_id", s.agent_id, r.agentId],
    ["status", s.status, "settled"],
    ["model", s.model, r.model],
    ["charge_micros", String(s.charge_micros), r.chargeMicros.toString()],
    ["earning_micros", String(s.earning_micros), r.earningMicros.toString()],
    ["price_ver", s.price_ver, r.priceVer],
    ["tier_bps", s.tier_bps, r.tierBps],
    ["input_tokens", s.input_tokens, r.chargedUsage.inputTokens],
    ["output_tokens", s.output_tokens, r.chargedUsage.outputTokens],
    ["estimated", s.estimated, r.estimated],
    ["end_cause", s.end_cause, r.endCause],
  ];
  const record = rows.record;
  if (record) pairs.push(["record id", record.id, r.requestId], ["record user_id", record.user_id, s.user_id], ["record agent_id", record.agent_id, r.agentId]);
  const bad = pairs.filter(([, a, b]) => a !== b).map(([name, a, b]) => `${name} ${String(a)} ≠ ${String(b)}`);
  return bad.length ? `the hub record differs from the receipt: ${bad.join(", ")}` : null;
}

/** Writes one batch: settlement rows, request records, journal entries and rollups, in one transaction. */
async function writeBatch(pool: pg.Pool, batch: Ready[]): Promise<{ written: string[]; users: string[] }> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const docs = `[${batch.map((b) => b.plaintext).join(",")}]`;
    const inserted = await client.query<{ request_id: string; user_id: string }>(
      `INSERT INTO reservations SELECT r.* FROM json_array_elements($1::json) x CROSS JOIN LATERAL json_populate_record(NULL::reservations, x->'reservation') r
       ON CONFLICT (request_id) DO NOTHING RETURNING request_id, user_id`,
      [docs],
    );
    const written = inserted.rows.map((r) => r.request_id);
    await client.query(
      `INSERT INTO request_records SELECT r.* FROM json_array_elements($1::json) x CROSS JOIN LATERAL json_populate_record(NULL::request_records, x->'record') r
       WHERE json_typeof(x->'record') = 'object' AND x->'reservation'->>'request_id' = ANY($2)
       ON CONFLICT (id, started_at) DO NOTHING`,
      [docs, written],
    );
    // As the settlement function posts them (wellspring_settle_batch, per request as wellspring_settle_leased did): at the settlement's time, one
    // transaction per request, no zero entries.
    await client.query(
      `INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind, created_at)
       SELECT 'settle:' || r.request_id, r.request_id, e.account, e.amount, e.kind, r.settled_at
         FROM reservations r
        CROSS JOIN LATERAL (VALUES (1, 'user:' || r.user_id, -r.charge_micros, 'usage'),
                                   (2, 'owner:' || r.owner_id, r.earning_micros, 'earning'),
                                   (3, 'platform:margin', r.charge_micros - r.earning_micros, 'margin')) AS e(ord, account, amount, kind)
        WHERE r.request_id = ANY($1) AND e.amount <> 0
        ORDER BY r.settled_at, r.request_id, e.ord`,
      [written],
    );
    await client.query(
      `INSERT INTO usage_daily (user_id, day, model, spent_micros, requests)
       SELECT user_id, (settled_at AT TIME ZONE 'UTC')::date, COALESCE(model, 'unknown'), SUM(charge_micros), COUNT(*)
         FROM reservations WHERE request_id = ANY($1) GROUP BY 1, 2, 3
       ON CONFLICT (user_id, day, model) DO UPDATE SET spent_micros = usage_daily.spent_micros + EXCLUDED.spent_micros,
         requests = usage_daily.requests + EXCLUDED.requests`,
      [written],
    );
    await client.query("COMMIT");
    return { written, users: [...new Set(inserted.rows.map((r) => r.user_id))] };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** Wallet totals from the journal: spent = the user's usage entries; available = the account's total less what is held. */
async function recomputeWallets(pool: pg.Pool, users: string[]): Promise<void> {
  if (users.length === 0) return;
  await pool.query("INSERT INTO wallets (user_id) SELECT unnest($1::text[]) ON CONFLICT (user_id) DO NOTHING", [users]);
  await pool.query(
    `UPDATE wallets w SET spent_micros = -wellspring_account_total('user:' || w.user_id, 'usage'),
       available_micros = wellspring_account_total('user:' || w.user_id) - w.reserved_micros, updated_at = now()
     WHERE w.user_id = ANY($1)`,
    [users],
  );
}

async function verifyFile(pool: pg.Pool, file: string): Promise<{ agent: AgentRebuild; receipts: Receipt[] }> {
  const bytes = new Uint8Array(await readFile(file));
  const { records, wholeBytes } = decodeLogRecords(bytes);
  const agent: AgentRebuild = { file, agentId: null, receipts: records.length, verified: 0, rebuilt: 0, firstBadSeq: null, fault: null, notRebuilt: [] };
  const bad = (seq: number, fault: string) => ({ agent: { ...agent, firstBadSeq: seq, fault }, receipts: [] });
  if (records.length === 0) return wholeBytes < bytes.length ? bad(1, "malformed: no whole record") : { agent, receipts: [] };
  let agentId: string;
  try {
    agentId = decodeReceipt(records[0]!.body).agentId;
  } catch (error) {
    return bad(1, `malformed: ${(error as Error).message}`);
  }
  agent.agentId = agentId;
  const row = await pool.query<{ public_key: string }>("SELECT public_key FROM agents WHERE id = $1", [agentId]);
  const key = row.rows[0] ? await importReceiptVerifyKey(row.rows[0].public_key) : null;
  if (!key) return bad(1, `unknown_agent: ${agentId} is not an agent of this hub`);
  const entries = await logEntries(records);
  const verdict = await verifyChain(entries, { agentId, key });
  if (verdict.ok) {
    agent.verified = verdict.count;
    if (wholeBytes < bytes.length) {
      agent.firstBadSeq = verdict.count + 1;
      agent.fault = `truncated: ${bytes.length - wholeBytes} bytes after the last whole record`;
    }
    return { agent, receipts: verdict.receipts };
  }
  agent.firstBadSeq = verdict.firstBadSeq;
  agent.fault = `${verdict.fault}: ${verdict.detail}`;
  // The receipts before the first bad one verified: they stand on their own.
  const prefix = await verifyChain(entries.slice(0, verdict.index), { agentId, key });
  agent.verified = prefix.ok ? prefix.count : 0;
  return { agent, receipts: prefix.ok ? prefix.receipts : [] };
}

export async function rebuildFromEdge(opts: RebuildOptions): Promise<RebuildReport> {
  const { pool } = opts;
  const now = opts.now ?? Date.now;
  const present = await usageRows(pool);
  if (present > 0 && !opts.intoNonEmpty)
    throw new RebuildRefusedError(
      `Cannot rebuild: the database already holds ${present} settlement, request-record, rollup or settlement-journal rows (rebuild into an empty database, or pass --into-non-empty to leave the requests already there as they are)`,
    );
  const files = await exportFiles(opts.from);
  const agents: AgentRebuild[] = [];
  const users = new Set<string>();
  let done = 0;
  let rebuilt = 0;
  let lastLine = now();
  let lastCount = 0;
  const progress = (agentId: string | null, force = false) => {
    if (!opts.progress) return;
    if (!force && done - lastCount < REBUILD_PROGRESS_EVERY_RECEIPTS && now() - lastLine < REBUILD_PROGRESS_EVERY_MS) return;
    lastLine = now();
    lastCount = done;
    opts.progress(`rebuild-from-edge: ${done} receipts read, ${rebuilt} requests rebuilt (${agentId ? `agent ${agentId}` : "all ledgers"})`);
  };
  for (const file of files) {
    // Verifying a long chain takes a while (~0.3 ms a receipt): say which file it is on.
    opts.progress?.(`rebuild-from-edge: verifying ${file}`);
    const { agent, receipts } = await verifyFile(pool, file);
    agents.push(agent);
    let batch: Ready[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const out = await writeBatch(pool, batch);
      const written = new Set(out.written);
      for (const b of batch)
        if (!written.has(b.receipt.requestId))
          agent.notRebuilt.push({ seq: b.receipt.seq, requestId: b.receipt.requestId, reason: "the request is already in the database" });
      agent.rebuilt += written.size;
      rebuilt += written.size;
      out.users.forEach((u) => users.add(u));
      batch = [];
    };
    for (const receipt of receipts) {
      done++;
      const skip = (reason: string) => agent.notRebuilt.push({ seq: receipt.seq, requestId: receipt.requestId, reason });
      const plaintext = receipt.hubRecord ? openHubRecord(opts.rebuildKey, receipt.requestId, receipt.hubRecord) : null;
      if (!receipt.hubRecord) skip("no hub record (a receipt signed before hub records, or one whose record was too large)");
      else if (plaintext === null) skip("the hub record does not open with this rebuild key");
      else {
        let rows: HubRows;
        try {
          rows = JSON.parse(plaintext) as HubRows;
        } catch {
          rows = {};
        }
        const differs = disagreement(receipt, rows);
        if (differs) skip(differs);
        else batch.push({ receipt, plaintext });
      }
      if (batch.length >= REBUILD_BATCH_RECEIPTS_MAX) await flush();
      progress(agent.agentId);
    }
    await flush();
  }
  await recomputeWallets(pool, [...users]);
  progress(null, true);
  const lines: string[] = [];
  for (const a of agents) {
    const head = `agent ${a.agentId ?? "?"} (${a.file}): ${a.receipts} receipts, ${a.verified} verified, ${a.rebuilt} requests rebuilt`;
    lines.push(
      a.firstBadSeq === null ? `${head}, chain whole` : `${head}; BAD at sequence ${a.firstBadSeq} (${a.fault}): receipts from ${a.firstBadSeq} on not rebuilt`,
    );
    for (const n of a.notRebuilt.slice(0, REBUILD_REPORT_RECEIPTS_MAX)) lines.push(`  receipt ${n.seq} (request ${n.requestId}) not rebuilt: ${n.reason}`);
    if (a.notRebuilt.length > REBUILD_REPORT_RECEIPTS_MAX) lines.push(`  … and ${a.notRebuilt.length - REBUILD_REPORT_RECEIPTS_MAX} more receipts not rebuilt`);
  }
  lines.push(`${rebuilt} requests rebuilt from ${files.length} ledgers; ${users.size} wallets recomputed from the journal`);
  const ok = agents.every((a) => a.firstBadSeq === null && a.notRebuilt.length === 0);
  return { ok, agents, rebuilt, users: users.size, lines };
}
