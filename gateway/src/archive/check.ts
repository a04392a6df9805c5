/**
 * The archive's part of the ledger audit (`npm run admin -- audit`, `GET /admin/v1/ledger/audit`). The ledger
 * audit itself counts archived journal days through their totals; this checks that those totals can be trusted:
 *
 *  - every archived journal slice balances (its entries sum to zero, no transaction is left unbalanced), and
 *    the totals the audit adds (`journal_archive_totals`) equal what its manifest recorded, entry for entry;
 *  - the archived request-record slices' manifests hold their counts and checksums;
 *  - no slice was left half-exported for longer than ARCHIVE_STALE_EXPORT_MS;
 *  - with a store (`deep`), each slice's objects are read back: manifest SHA-256 as recorded, every part's
 *    checksums and row count, and the rows summed again to the manifest's totals.
 */
import type pg from "pg";
import { ARCHIVE_STALE_EXPORT_MS, listSlices, type Archiver, type JournalTotals } from "./archiver.ts";

export interface ArchiveCheck {
  ok: boolean;
  problems: string[];
  slicesChecked: number;
  /** Rows the archived slices hold, by table. */
  archivedRows: Record<string, number>;
}

export async function checkArchive(pool: pg.Pool, deep: Archiver | null = null, now: () => number = Date.now): Promise<ArchiveCheck> {
  const problems: string[] = [];
  const slices = await listSlices(pool);
  const archivedRows: Record<string, number> = {};
  const totals = await pool.query<{ day: string; seq: number; account: string; kind: string; amount: string; entries: number }>(
    'SELECT to_char(day, \'YYYY-MM-DD\') AS day, seq, account, kind, amount_micros::text AS amount, entries FROM journal_archive_totals ORDER BY account COLLATE "C", kind COLLATE "C"',
  );
  const bySlice = new Map<string, typeof totals.rows>();
  for (const t of totals.rows) bySlice.set(`${t.day}#${t.seq}`, [...(bySlice.get(`${t.day}#${t.seq}`) ?? []), t]);
  let checked = 0;
  for (const s of slices) {
    const name = `${s.table} ${s.day} #${s.seq}`;
    if (s.status === "exporting") {
      const started = await pool.query<{ started_at: Date }>("SELECT started_at FROM archive_manifests WHERE table_name = $1 AND day = $2 AND seq = $3", [
        s.table,
        s.day,
        s.seq,
      ]);
      const at = started.rows[0]?.started_at.getTime() ?? now();
      if (now() - at > ARCHIVE_STALE_EXPORT_MS)
        problems.push(
          `archive of ${name} started ${new Date(at).toISOString()} and never finished (its rows are still in the table; the next run exports them again)`,
        );
      continue;
    }
    const kept = bySlice.get(`${s.day}#${s.seq}`) ?? [];
    if (s.status !== "archived" || s.table !== "journal_entries") {
      if (s.status === "restored" && s.table === "journal_entries" && kept.length > 0)
        problems.push(`${name} was restored but its archived totals are still counted`);
      if (s.status === "archived") {
        checked++;
        archivedRows[s.table] = (archivedRows[s.table] ?? 0) + s.rows;
        if (!s.contentSha256 || !s.objectSha256 || s.parts.length === 0) problems.push(`${name}: the manifest lacks its checksums or parts`);
        else if (s.parts.reduce((n, p) => n + p.rows, 0) !== s.rows) problems.push(`${name}: its parts hold other than ${s.rows} rows`);
      }
      continue;
    }
    checked++;
    archivedRows[s.table] = (archivedRows[s.table] ?? 0) + s.rows;
    const t = s.totals as JournalTotals;
    if (t.kind !== "journal") {
      problems.push(`${name}: the manifest holds no journal totals`);
      continue;
    }
    if (t.sumMicros !== "0") problems.push(`${name}: the archived entries sum to ${t.sumMicros}, not 0`);
    if (t.unbalancedTransactions !== 0) problems.push(`${name}: ${t.unbalancedTransactions} archived transactions do not balance`);
    if (t.rows !== s.rows) problems.push(`${name}: totals count ${t.rows} entries, the manifest ${s.rows}`);
    const recorded = JSON.stringify(t.accounts.map((a) => [a.account, a.kind, a.amountMicros, a.entries]));
    const counted = JSON.stringify(kept.map((a) => [a.account, a.kind, a.amount, a.entries]));
    if (recorded !== counted) problems.push(`${name}: the totals the ledger counts (journal_archive_totals) differ from the manifest's`);
  }
  // Totals without an archived slice behind them would be money nobody can show.
  const archivedJournal = new Set(slices.filter((s) => s.table === "journal_entries" && s.status === "archived").map((s) => `${s.day}#${s.seq}`));
  for (const key of bySlice.keys())
    if (!archivedJournal.has(key)) problems.push(`journal_archive_totals holds totals for ${key.replace("#", " #")}, which is not an archived slice`);
  if (deep) problems.push(...(await deep.verifyStored()));
  return { ok: problems.length === 0, problems, slicesChecked: checked, archivedRows };
}
