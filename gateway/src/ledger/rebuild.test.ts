// rebuild-from-edge against a real PostgreSQL, on synthetic exports: an empty database only unless told; each
// receipt that cannot stand (no hub record, a record under another key, a record whose charge differs from what the
// agent signed) is named and not rebuilt; an export of an agent the hub does not know is refused whole; progress is
// reported on long runs.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { RebuildRefusedError, rebuildFromEdge, REBUILD_PROGRESS_EVERY_RECEIPTS } from "./rebuild.ts";
import { syntheticExport } from "./testing/synthetic_export.ts";

let database: TestDatabase;
let pool: pg.Pool;
let dir: string;

beforeAll(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 4 });
  pool.on("error", () => {});
  dir = await mkdtemp(join(tmpdir(), "ws-rebuild-"));
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await database?.drop();
  await rm(dir ?? "/nonexistent", { recursive: true, force: true });
});

const count = async (table: string) => (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;

describe("rebuild from the edge", () => {
  it("rebuilds what stands, names each receipt that does not, refuses a non-empty database unless told, and reports progress", async () => {
    const key = new Uint8Array(randomBytes(32));
    const good = await syntheticExport(database.db, pool, { receipts: REBUILD_PROGRESS_EVERY_RECEIPTS + 10, users: 3, rebuildKey: key });
    const odd = await syntheticExport(database.db, pool, {
      receipts: 6,
      users: 2,
      rebuildKey: key,
      withoutRecord: (seq) => seq === 2,
      sealedCharge: (seq, charge) => (seq === 4 ? charge + 1 : charge),
    });
    const foreign = await syntheticExport(database.db, pool, { receipts: 2, users: 1 }); // sealed under another key
    await writeFile(join(dir, "a.ledger"), good.bytes);
    await writeFile(join(dir, "b.ledger"), odd.bytes);
    await writeFile(join(dir, "c.ledger"), foreign.bytes);
    const progress: string[] = [];
    const report = await rebuildFromEdge({ pool, rebuildKey: key, from: [dir], progress: (l) => progress.push(l) });
    expect(report.ok).toBe(false);
    expect(report.rebuilt).toBe(good.receipts.length + 4);
    expect(report.agents.map((a) => [a.agentId, a.verified, a.rebuilt, a.firstBadSeq])).toEqual([
      [good.agentId, good.receipts.length, good.receipts.length, null],
      [odd.agentId, 6, 4, null],
      [foreign.agentId, 2, 0, null],
    ]);
    const lines = report.lines.join("\n");
    expect(lines).toContain(`receipt 2 (request ${odd.receipts[1]!.requestId}) not rebuilt: no hub record`);
    expect(lines).toContain(`receipt 4 (request ${odd.receipts[3]!.requestId}) not rebuilt: the hub record differs from the receipt: charge_micros`);
    expect(lines).toContain(`receipt 1 (request ${foreign.receipts[0]!.requestId}) not rebuilt: the hub record does not open with this rebuild key`);
    expect(await count("reservations")).toBe(report.rebuilt);
    expect(await count("request_records")).toBe(report.rebuilt);
    // One line per file verified; one progress line at the first REBUILD_PROGRESS_EVERY_RECEIPTS receipts, one at the end.
    expect(progress.filter((l) => l.includes(": verifying "))).toEqual(["a", "b", "c"].map((f) => `rebuild-from-edge: verifying ${join(dir, `${f}.ledger`)}`));
    expect(progress.filter((l) => !l.includes(": verifying "))[0]).toMatch(
      new RegExp(`^rebuild-from-edge: ${REBUILD_PROGRESS_EVERY_RECEIPTS} receipts read, \\d+ requests rebuilt \\(agent ${good.agentId}\\)$`),
    );
    expect(progress.at(-1)).toBe(`rebuild-from-edge: ${good.receipts.length + 8} receipts read, ${report.rebuilt} requests rebuilt (all ledgers)`);
    // The wallets follow the journal: spent = the usage entries.
    const spent = await pool.query<{ spent: string; usage: string }>(
      `SELECT SUM(w.spent_micros)::text AS spent, (SELECT -SUM(amount_micros) FROM journal_entries WHERE kind = 'usage')::text AS usage FROM wallets w`,
    );
    expect(spent.rows[0]!.spent).toBe(spent.rows[0]!.usage);

    // Not into a database that holds usage rows, unless told; told, the requests already there stay as they are.
    await expect(rebuildFromEdge({ pool, rebuildKey: key, from: [join(dir, "a.ledger")] })).rejects.toThrow(RebuildRefusedError);
    const again = await rebuildFromEdge({ pool, rebuildKey: key, from: [join(dir, "a.ledger")], intoNonEmpty: true });
    expect(again.rebuilt).toBe(0);
    expect(again.agents[0]!.notRebuilt).toHaveLength(good.receipts.length);
    expect(again.lines.join("\n")).toContain("not rebuilt: the request is already in the database");
    expect(await count("reservations")).toBe(report.rebuilt);
  }, 120_000);

  it("refuses an export of an agent the hub does not know, and a file that is not an export", async () => {
    const other = await createTestDatabase();
    const otherPool = new pg.Pool({ connectionString: other.url, max: 2 });
    try {
      const made = await syntheticExport(other.db, otherPool, { receipts: 3, users: 1 });
      await writeFile(join(dir, "unknown.ledger"), made.bytes);
      await writeFile(join(dir, "junk.ledger"), new Uint8Array([0, 0, 0, 5, 1, 2, 3, 4, 5]));
      await pool.query("DELETE FROM journal_entries WHERE kind IN ('usage', 'earning', 'margin')");
      await pool.query("DELETE FROM request_records");
      await pool.query("DELETE FROM usage_daily");
      await pool.query("DELETE FROM reservations");
      const report = await rebuildFromEdge({ pool, rebuildKey: made.rebuildKey, from: [join(dir, "unknown.ledger"), join(dir, "junk.ledger")] });
      expect(report.ok).toBe(false);
      expect(report.agents.map((a) => [a.verified, a.rebuilt, a.firstBadSeq, a.fault?.split(":")[0]])).toEqual([
        [0, 0, 1, "unknown_agent"],
        [0, 0, 1, "malformed"],
      ]);
      expect(await count("reservations")).toBe(0);
    } finally {
      await otherPool.end();
      await other.drop();
    }
  }, 120_000);
});
