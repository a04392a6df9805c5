/**
 * The offline migration workflow against a real PostgreSQL: deploy every migration to a fresh database,
 * find schema.prisma and the migrations in agreement, and notice when they are not.
 */
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createDb, createMigration, deployMigrations, diffMigrationsToSchema, newId } from "../src/mod.ts";
import { MIGRATIONS_DIR, SCHEMA_PATH } from "../src/migrate.ts";

const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const created: string[] = [];

async function freshDatabase(): Promise<string> {
  const name = `ws_mig_${newId("hub").slice(4)}`;
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  await c.query(`CREATE DATABASE "${name}"`);
  await c.end();
  created.push(name);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function shadowDatabases(): Promise<string[]> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  const r = await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'wellspring_shadow_%'");
  await c.end();
  return r.rows.map((row) => row.datname);
}

afterAll(async () => {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  for (const name of created) await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await c.end();
});

describe("migrations", () => {
  it("deploy every migration to a fresh database, once", async () => {
    const url = await freshDatabase();
    const applied = await deployMigrations(url);
    expect(applied.length).toBeGreaterThan(0);
    expect(await deployMigrations(url)).toEqual([]);
    const db = createDb(url);
    const rows = await db.$queryRaw<
      { migration_name: string; finished_at: Date | null }[]
    >`SELECT migration_name, finished_at FROM _prisma_migrations ORDER BY migration_name`;
    expect(rows.map((r) => r.migration_name)).toEqual(applied);
    expect(rows.every((r) => r.finished_at !== null)).toBe(true);
    // The deployed schema works through the client: a nested create and a read back.
    const userId = newId("usr");
    await db.user.create({
      data: { id: userId, email: `${userId}@x.test`, keys: { create: { id: newId("key"), name: "k", prefix: "sk-ws-abc", hash: newId("hub") } } },
    });
    expect(await db.virtualKey.count({ where: { userId } })).toBe(1);
    await db.$disconnect();
  }, 60_000);

  it("schema.prisma and the committed migrations agree, and no shadow database is left behind", async () => {
    const url = await freshDatabase();
    expect(await diffMigrationsToSchema(url)).toBe("");
    expect(await shadowDatabases()).toEqual([]);
  }, 60_000);

  it("a schema change without a migration is detected, and a created migration resolves it", async () => {
    const url = await freshDatabase();
    const dir = await mkdtemp(join(tmpdir(), "ws-mig-"));
    const schemaPath = join(dir, "schema.prisma");
    const migrations = join(dir, "migrations");
    await cp(MIGRATIONS_DIR, migrations, { recursive: true });
    const schema = await readFile(SCHEMA_PATH, "utf8");
    await writeFile(schemaPath, schema.replace("  name         String?\n", "  name         String?\n  nickname     String?\n"));
    const diff = await diffMigrationsToSchema(url, migrations, schemaPath);
    expect(diff).toMatch(/ALTER TABLE "users" ADD COLUMN\s+"nickname" TEXT/);
    const folder = await createMigration(url, "add_nickname", migrations, schemaPath);
    expect(folder).toMatch(/\d{14}_add_nickname$/);
    expect(await diffMigrationsToSchema(url, migrations, schemaPath)).toBe("");
    const committed = (await readdir(MIGRATIONS_DIR, { withFileTypes: true })).filter((e) => e.isDirectory()).length;
    const applied = await deployMigrations(url, migrations);
    expect(applied).toHaveLength(committed + 1);
    expect(applied.at(-1)).toMatch(/_add_nickname$/);
  }, 60_000);

  it("partitioning keeps every existing request record and journal entry, each in its UTC day's partition", async () => {
    const url = await freshDatabase();
    const dir = await mkdtemp(join(tmpdir(), "ws-mig-"));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    const partitioning = (await readdir(dir)).find((n) => n.endsWith("_partitions_archive_releases"))!;
    await rm(join(dir, partitioning), { recursive: true });
    await deployMigrations(url, dir);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const userId = newId("usr");
      const keyId = newId("key");
      await c.query("INSERT INTO users (id, email, updated_at) VALUES ($1, $2, now())", [userId, `${userId}@x.test`]);
      await c.query("INSERT INTO virtual_keys (id, user_id, name, prefix, hash) VALUES ($1, $2, 'k', 'sk-ws-abc', $3)", [keyId, userId, newId("hub")]);
      // Rows of three UTC days: 45 days ago, yesterday 23:59:59.999 and today.
      const times = ["now() - interval '45 days'", "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 millisecond'", "now()"];
      for (const [i, t] of times.entries()) {
        await c.query(
          `INSERT INTO request_records (id, user_id, key_id, gateway_id, route, provider, http_status, end_cause, started_at, duration_ms, user_charge_micros)
          VALUES ($1, $2, $3, 'gw_t', '/v1/chat/completions', 'openai', 200, 'completed', ${t}, 5, $4)`,
          [`req_m${i}`, userId, keyId, 1000 * (i + 1)],
        );
        await c.query(
          `INSERT INTO journal_entries (tx_id, account, amount_micros, kind, created_at) VALUES ($1, 'platform:funding', $2, 'grant', ${t}), ($1, $3, $4, 'grant', ${t})`,
          [`grant:m${i}`, -(i + 1) * 1_000_000, `user:${userId}`, (i + 1) * 1_000_000],
        );
      }
      const before = await c.query(
        "SELECT (SELECT json_agg(r ORDER BY id) FROM request_records r) AS records, (SELECT json_agg(j ORDER BY id) FROM journal_entries j) AS journal",
      );
      expect(await deployMigrations(url, MIGRATIONS_DIR)).toEqual([partitioning]);
      const after = await c.query(
        "SELECT (SELECT json_agg(r ORDER BY id) FROM request_records r) AS records, (SELECT json_agg(j ORDER BY id) FROM journal_entries j) AS journal",
      );
      expect(after.rows[0]).toEqual(before.rows[0]);
      const placed = await c.query<{ relname: string; n: number }>(`
        SELECT p.relname, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', p.relname), false, true, '')))[1]::text::int AS n
        FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid JOIN pg_class parent ON parent.oid = i.inhparent
        WHERE parent.relname IN ('request_records', 'journal_entries') ORDER BY 1`);
      const holding = placed.rows.filter((r) => r.n > 0);
      // Each row in its own day's partition (journal: two entries per day), none in the default partitions.
      expect(holding.map((r) => r.n).sort()).toEqual([1, 1, 1, 2, 2, 2]);
      expect(holding.every((r) => /_p\d{8}$/.test(r.relname))).toBe(true);
      // Partitions exist ahead of time, and new rows go to today's.
      expect(placed.rows.filter((r) => r.relname.startsWith("journal_entries_p")).length).toBeGreaterThanOrEqual(9);
      await c.query(
        "INSERT INTO journal_entries (tx_id, account, amount_micros, kind) VALUES ('grant:new', 'platform:funding', -1, 'grant'), ('grant:new', $1, 1, 'grant')",
        [`user:${userId}`],
      );
      const balance = await c.query<{ total: string }>("SELECT wellspring_account_total($1)::text AS total", [`user:${userId}`]);
      expect(balance.rows[0]!.total).toBe("6000001");
    } finally {
      await c.end();
    }
  }, 120_000);
});
