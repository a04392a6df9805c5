/**
 * Hot and cold data through the real stack and the operator's command, against a real S3-compatible server
 * (s3rver): traffic through a gateway and an agent makes journal entries and request records; two days' worth
 * are moved 40 and 41 days into the past (as if they had been written then); `npm run archive -- run` is killed
 * with SIGKILL mid-export and again right before its final transaction, then run to the end. Afterwards every
 * archived day reads back equal to the rows it held, the objects match their manifests, nothing is left in the
 * hot tables for those days, the ledger audit passes, and the portal's dashboards and balances show what they
 * showed before. A restored day equals the original rows; rows that arrive for an archived day are archived
 * as its next slice.
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3ArchiveStore } from "../../gateway/src/archive/store.ts";
import { RecordWriter } from "../../gateway/src/api/records.ts";
import { Treasury } from "../../gateway/src/ops/treasury.ts";
import { createLogger } from "../../gateway/src/log.ts";
import { adminFetch, startProc, startStack, TSX, type Proc, type Stack } from "./harness.ts";
import type { PortalActor } from "../support/portal_http.ts";

const BUCKET = "wellspring-archive";
const PREFIX = "hub-test/";
const DAY_MS = 86_400_000;
const dayOf = (msAgo: number) => new Date(Date.now() - msAgo).toISOString().slice(0, 10);
const OLD_DAYS = [dayOf(41 * DAY_MS), dayOf(40 * DAY_MS)];

let stack: Stack;
let s3: S3rver;
let s3Dir: string;
let s3Origin: string;
let utc: pg.Client;
let pool: pg.Pool;
/** The portal's data functions behind the user's and the owner's dashboards (web/lib/data), as this test calls them. */
type Actor = PortalActor;
interface Portal {
  usage: {
    balance(a: Actor): Promise<unknown>;
    spendByDay(a: Actor, days: number): Promise<unknown>;
    spendByModel(a: Actor, days: number): Promise<unknown>;
  };
  owner: { earnings(a: Actor, days: number): Promise<{ unrequestedMicros: bigint; pendingPayoutMicros: bigint; byDay: unknown }> };
}
const PORTAL_DATA = "../../web/lib/data";
let portal: Portal;

beforeAll(async () => {
  s3Dir = await mkdtemp(join(tmpdir(), "ws-s3-"));
  s3 = new S3rver({ port: 0, address: "127.0.0.1", directory: s3Dir, silent: true, configureBuckets: [{ name: BUCKET }] });
  const address = await s3.run();
  s3Origin = `http://127.0.0.1:${address.port}`;
  // The gateway's own job would race the command under test: partitions only.
  stack = await startStack({ gatewayEnv: { ARCHIVE_INTERVAL_MS: "0" } });
  utc = new pg.Client({ connectionString: stack.database.url, options: "-c TimeZone=UTC" });
  await utc.connect();
  pool = new pg.Pool({ connectionString: stack.database.url, max: 2 });
  process.env.DATABASE_URL = stack.database.url;
  // Imported by path at run time: the portal compiles under its own tsconfig (Next.js types), not this one.
  portal = { usage: (await import(`${PORTAL_DATA}/usage.ts`)) as Portal["usage"], owner: (await import(`${PORTAL_DATA}/owner.ts`)) as Portal["owner"] };
}, 180_000);

afterAll(async () => {
  await utc?.end();
  await pool?.end();
  await stack?.close();
  await s3?.close();
  await rm(s3Dir, { recursive: true, force: true });
});

function archiveCommand(args: string[], env: Record<string, string> = {}): Proc {
  return startProc(TSX, ["gateway/src/cli/archive.ts", ...args], {
    env: {
      DATABASE_URL: stack.database.url,
      ARCHIVE_S3_BUCKET: BUCKET,
      ARCHIVE_S3_ENDPOINT: s3Origin,
      ARCHIVE_S3_PREFIX: PREFIX,
      ARCHIVE_S3_ACCESS_KEY_ID: "S3RVER",
      ARCHIVE_S3_SECRET_ACCESS_KEY: "S3RVER",
      LOG_LEVEL: "warn",
      ...env,
    },
  });
}

/** Waits for a line matching `pattern` among those printed after the first `from` lines. */
async function lineAfter(proc: Proc, from: number, pattern: RegExp, timeoutMs: number): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const i = proc.lines.findIndex((l, n) => n >= from && pattern.test(l));
    if (i >= 0) return i;
    if (Date.now() > until || proc.child.exitCode !== null) throw new Error(`no line matching ${pattern} after line ${from}:\n${proc.lines.join("\n")}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function exitOf(proc: Proc): Promise<number | null> {
  if (proc.child.exitCode !== null) return proc.child.exitCode;
  return new Promise((r) => proc.child.once("exit", (code) => r(code)));
}

/** Rows of a table in a UTC day, as plain objects with every value a string (or null), in key order. */
async function hotRows(table: "journal_entries" | "request_records", day: string): Promise<Record<string, string | null>[]> {
  const col = table === "journal_entries" ? "created_at" : "started_at";
  const order = table === "journal_entries" ? "id" : "id, started_at";
  const r = await utc.query<{ row: string }>(
    `SELECT to_jsonb(t)::text AS row FROM ${table} t WHERE ${col} >= $1::date::timestamp AT TIME ZONE 'UTC' AND ${col} < ($1::date + 1)::timestamp AT TIME ZONE 'UTC' ORDER BY ${order}`,
    [day],
  );
  return r.rows.map((x) => normalise(x.row));
}

/** One JSON row with every scalar as a string: archived rows carry bigints as strings, to_jsonb as numbers. */
function normalise(line: string): Record<string, string | null> {
  const row = JSON.parse(line) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v === null ? null : typeof v === "string" ? v : JSON.stringify(v)]));
}

/** What the owner's and the user's pages show, and what the ledger says. */
async function dashboards() {
  const user: Actor = { userId: stack.userId, email: "u@test", name: null, isOwner: false, isAdmin: false };
  const owner: Actor = { userId: stack.ownerId, email: "o@test", name: null, isOwner: true, isAdmin: false };
  const earnings = await portal.owner.earnings(owner, 60);
  return {
    balance: await portal.usage.balance(user),
    spendByDay: await portal.usage.spendByDay(user, 60),
    spendByModel: await portal.usage.spendByModel(user, 60),
    ownerUnrequested: earnings.unrequestedMicros,
    ownerPending: earnings.pendingPayoutMicros,
    ownerByDay: earnings.byDay,
    treasuryBalance: await new Treasury(pool).ownerBalance(stack.ownerId),
  };
}

async function audit(): Promise<{ ok: boolean; problems: string[] }> {
  const res = await adminFetch(stack.gateway.adminOrigin, "/admin/v1/ledger/audit");
  return (await res.json()) as { ok: boolean; problems: string[] };
}

const originals = new Map<string, Record<string, string | null>[]>();
let before: Awaited<ReturnType<typeof dashboards>>;

describe("archiving old days to S3", () => {
  it("traffic makes rows; two days of them age past the retention", async () => {
    for (let i = 0; i < 24; i++) {
      const res = await fetch(`${stack.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ model: i % 2 ? "gpt-4o-mini" : "gpt-4o", messages: [{ role: "user", content: `hello ${i}` }] }),
      });
      expect(res.status).toBe(200);
      await res.text();
    }
    // An owner's payout request: journal entries of other kinds and accounts.
    await expect.poll(async () => (await new Treasury(pool).ownerBalance(stack.ownerId)) > 10n, { timeout: 10_000 }).toBe(true);
    expect((await new Treasury(pool).requestPayout(stack.ownerId, 10n)).outcome).toBe("requested");
    await expect
      .poll(async () => Number((await utc.query<{ n: string }>("SELECT count(*) AS n FROM request_records")).rows[0]!.n), { timeout: 10_000 })
      .toBe(24);
    // Age the rows: whole transactions (and records) to one of two days 40 and 41 days ago, as if written then.
    for (const [i, day] of OLD_DAYS.entries()) {
      await utc.query(
        "SELECT wellspring_day_partition('journal_entries', 'created_at', $1::date), wellspring_day_partition('request_records', 'started_at', $1::date)",
        [day],
      );
      await utc.query(
        `UPDATE journal_entries SET created_at = created_at - $1 * interval '1 day' WHERE created_at > now() - interval '1 day' AND get_byte(sha256(tx_id::bytea), 0) % 2 = $2`,
        [41 - i, i],
      );
      await utc.query(
        `UPDATE request_records SET started_at = started_at - $1 * interval '1 day' WHERE started_at > now() - interval '1 day' AND get_byte(sha256(id::bytea), 0) % 2 = $2`,
        [41 - i, i],
      );
    }
    for (const table of ["journal_entries", "request_records"] as const) {
      for (const day of OLD_DAYS) {
        const rows = await hotRows(table, day);
        expect(rows.length, `${table} ${day}`).toBeGreaterThan(0);
        originals.set(`${table} ${day}`, rows);
      }
    }
    expect(await audit()).toMatchObject({ ok: true, problems: [] });
    before = await dashboards();
  }, 120_000);

  it("a run killed mid-export and again before its commit, then run again, archives every row exactly once", async () => {
    const small = { ARCHIVE_PART_ROWS: "8", ARCHIVE_BATCH_ROWS: "3" };
    // Killed while it exports the second slice (parts of the first are stored; nothing removed from it yet).
    const first = archiveCommand(["run"], small);
    const firstDone = await lineAfter(first, 0, /archived \(\d+ rows\)/, 60_000);
    const killedAt = await lineAfter(first, firstDone + 1, /exported [1-9]\d* of \d+ rows \((?!100%)/, 60_000);
    await first.stop("SIGKILL");
    const killedSlice = first.lines[killedAt]!.split(":")[0]!;
    expect(first.lines.slice(killedAt).some((l) => l.startsWith(`${killedSlice}: archived`))).toBe(false);
    expect(await audit()).toMatchObject({ ok: true, problems: [] });
    // Killed right after its objects were read back, as its final transaction begins.
    const second = archiveCommand(["run"], small);
    await second.waitForLine(/stored and read back; removing it from the database/, 60_000);
    await second.stop("SIGKILL");
    expect(await audit()).toMatchObject({ ok: true, problems: [] });
    const last = archiveCommand(["run"], small);
    expect(await exitOf(last)).toBe(0);
    expect(last.lines.join("\n")).toMatch(/done: \d+ slices archived/);

    const listed = archiveCommand(["list"]);
    expect(await exitOf(listed)).toBe(0);
    for (const table of ["journal_entries", "request_records"]) {
      for (const day of OLD_DAYS) {
        expect(listed.lines.filter((l) => l.startsWith(`${day} ${table} #`) && l.includes(" archived "))).toHaveLength(1);
        // The hot tables hold nothing of those days any more, and their day partitions are gone.
        expect(await hotRows(table as "journal_entries", day)).toEqual([]);
        const partition = await utc.query<{ r: string | null }>("SELECT to_regclass($1) AS r", [`${table}_p${day.replaceAll("-", "")}`]);
        expect(partition.rows[0]!.r).toBeNull();
      }
    }
    // Each archived day reads back (checked against its manifest by the command) equal to the rows it held.
    for (const table of ["journal_entries", "request_records"] as const) {
      for (const day of OLD_DAYS) {
        const read = archiveCommand(["read", "--table", table, "--day", day]);
        expect(await exitOf(read)).toBe(0);
        const rows = read.lines.filter((l) => l.startsWith("{")).map(normalise);
        expect(rows, `${table} ${day}`).toEqual(originals.get(`${table} ${day}`));
      }
    }
    // The store holds exactly the objects the manifests name: the killed runs left nothing extra.
    const store = new S3ArchiveStore({
      endpoint: s3Origin,
      region: "us-east-1",
      bucket: BUCKET,
      prefix: PREFIX,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
      forcePathStyle: true,
    });
    const manifests = await utc.query<{ object_key: string; totals: { parts: { key: string; objectSha256: string }[] }; object_sha256: string }>(
      "SELECT object_key, totals, object_sha256 FROM archive_manifests WHERE status = 'archived'",
    );
    const expected = manifests.rows.flatMap((m) => [m.object_key, ...m.totals.parts.map((p) => p.key)]).sort();
    expect(await store.list("")).toEqual(expected);
    for (const m of manifests.rows) {
      expect(
        createHash("sha256")
          .update((await store.getBytes(m.object_key))!)
          .digest("hex"),
      ).toBe(m.object_sha256);
      for (const p of m.totals.parts)
        expect(
          createHash("sha256")
            .update((await store.getBytes(p.key))!)
            .digest("hex"),
        ).toBe(p.objectSha256);
    }
    const verify = archiveCommand(["verify"]);
    expect(await exitOf(verify)).toBe(0);
    expect(verify.lines.join("\n")).toMatch(/archive ok: 4 slices read back and checked/);
    // The books and the pages that read them are unchanged.
    expect(await audit()).toMatchObject({ ok: true, problems: [] });
    expect(await dashboards()).toEqual(before);
  }, 240_000);

  it("a restored day equals the original rows, and balances do not count it twice", async () => {
    const day = OLD_DAYS[0]!;
    const restore = archiveCommand(["restore", "--day", day]);
    expect(await exitOf(restore)).toBe(0);
    for (const table of ["journal_entries", "request_records"] as const) expect(await hotRows(table, day)).toEqual(originals.get(`${table} ${day}`));
    expect(await audit()).toMatchObject({ ok: true, problems: [] });
    expect(await dashboards()).toEqual(before);
    // A restored day stays until it is archived again by name.
    const skip = archiveCommand(["run"]);
    expect(await exitOf(skip)).toBe(0);
    expect((await hotRows("journal_entries", day)).length).toBeGreaterThan(0);
    const again = archiveCommand(["run", "--day", day]);
    expect(await exitOf(again)).toBe(0);
    expect(await hotRows("journal_entries", day)).toEqual([]);
    expect(await audit()).toMatchObject({ ok: true, problems: [] });
    expect(await dashboards()).toEqual(before);
  }, 120_000);

  it("a record that arrives for an archived day is archived as that day's next slice", async () => {
    const day = OLD_DAYS[1]!;
    // What a gateway's spool replays after a long outage: a record of a request that started on that day, written
    // by the product's record writer. It waits in the default partition until the next run.
    const writer = new RecordWriter(pool, createLogger({}, "error"));
    writer.add({
      id: "req_late_replayed",
      userId: stack.userId,
      keyId: stack.keyId,
      agentId: null,
      gatewayId: "gw_late",
      route: "/v1/chat/completions",
      provider: "openai",
      model: "gpt-4o-mini",
      streamed: false,
      httpStatus: 200,
      endCause: "completed",
      bytesIn: 10,
      bytesOut: 20,
      startedAt: new Date(`${day}T12:00:00Z`),
      firstByteMs: 5,
      durationMs: 9,
      inputTokens: 3,
      outputTokens: 4,
      cachedInputTokens: null,
      usageEstimated: false,
      priceVer: null,
      tier: null,
      tierBps: null,
      userChargeMicros: 7n,
      ownerEarningMicros: 5n,
    });
    await writer.flush();
    writer.close();
    expect((await hotRows("request_records", day)).map((r) => r.id)).toEqual(["req_late_replayed"]);
    const run = archiveCommand(["run"]);
    expect(await exitOf(run)).toBe(0);
    const slices = await utc.query<{ seq: number; rows: number; status: string }>(
      "SELECT seq, rows, status::text FROM archive_manifests WHERE table_name = 'request_records' AND day = $1 ORDER BY seq",
      [day],
    );
    expect(slices.rows.map((r) => [r.seq, r.status])).toEqual([
      [1, "archived"],
      [2, "archived"],
    ]);
    expect(slices.rows[1]!.rows).toBe(1);
    expect(await hotRows("request_records", day)).toEqual([]);
    const read = archiveCommand(["read", "--table", "request_records", "--day", day]);
    expect(await exitOf(read)).toBe(0);
    const rows = read.lines.filter((l) => l.startsWith("{")).map(normalise);
    expect(rows).toEqual([...originals.get(`request_records ${day}`)!, expect.objectContaining({ id: "req_late_replayed", user_charge_micros: "7" })]);
    expect(await audit()).toMatchObject({ ok: true, problems: [] });
  }, 120_000);
});
