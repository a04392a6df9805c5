/**
 * The offline migration workflow against a real PostgreSQL: deploy every migration to a fresh database,
 * find schema.prisma and the migrations in agreement, and notice when they are not.
 */
import { cp, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
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
    const rows = await db.$queryRaw<{ migration_name: string; finished_at: Date | null }[]>`SELECT migration_name, finished_at FROM _prisma_migrations ORDER BY migration_name`;
    expect(rows.map((r) => r.migration_name)).toEqual(applied);
    expect(rows.every((r) => r.finished_at !== null)).toBe(true);
    // The deployed schema works through the client: a nested create and a read back.
    const userId = newId("usr");
    await db.user.create({ data: { id: userId, email: `${userId}@x.test`, keys: { create: { id: newId("key"), name: "k", prefix: "sk-ws-abc", hash: newId("hub") } } } });
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
});
