/**
 * Offline migrations with Prisma's Wasm schema engine (no native engine download).
 *
 * Keeps Prisma's standard layout — prisma/migrations/<timestamp>_<name>/migration.sql and the
 * `_prisma_migrations` table — so the official CLI can take over wherever it can fetch its engine.
 * Workarounds (see docs/operations/database.md): adapter-pg cannot map the catalog type `"char"` (oid 18),
 * its executeScript splits on `;`, and its shadow database is neither force-dropped nor cleaned on error.
 */
import { readdir, readFile, mkdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import pg from "pg";
import { PrismaPg } from "@prisma/adapter-pg";
import { bindMigrationAwareSqlAdapterFactory, ColumnTypeEnum } from "@prisma/driver-adapter-utils";

export const PRISMA_DIR = join(dirname(fileURLToPath(import.meta.url)), "..");
export const SCHEMA_PATH = join(PRISMA_DIR, "schema.prisma");
export const MIGRATIONS_DIR = join(PRISMA_DIR, "migrations");

type Engine = Awaited<ReturnType<typeof import("@prisma/schema-engine-wasm").SchemaEngine.new>>;
type EngineModule = typeof import("@prisma/schema-engine-wasm");
type MigrationList = Parameters<Engine["applyMigrations"]>[0]["migrationsList"];

const NO_FILTER = { externalTables: [], externalEnums: [] };
const PG_CHAR_OID = 18;
const PG_TEXT_OID = 25;

let enginePromise: Promise<EngineModule> | null = null;

/** Loads the Wasm engine by hand: Node 20 cannot `import` a .wasm module without a flag. */
async function loadEngineModule(): Promise<EngineModule> {
  (globalThis as Record<string, unknown>).PRISMA_WASM_PANIC_REGISTRY ??= { set_message: () => {} };
  const require = createRequire(import.meta.url);
  const pkgDir = dirname(require.resolve("@prisma/schema-engine-wasm"));
  const bg = (await import(join(pkgDir, "schema_engine_bg.js"))) as Record<string, unknown> & {
    __wbg_set_wasm(exports: WebAssembly.Exports): void;
  };
  const wasmBytes = await readFile(join(pkgDir, "schema_engine_bg.wasm"));
  const { instance } = await WebAssembly.instantiate(wasmBytes, { "./schema_engine_bg.js": bg as WebAssembly.ModuleImports });
  bg.__wbg_set_wasm(instance.exports);
  (instance.exports.__wbindgen_start as (() => void) | undefined)?.();
  return bg as unknown as EngineModule;
}

type Adapter = Awaited<ReturnType<PrismaPg["connect"]>>;

/** Patches one adapter connection: scripts go as one query, `"char"` columns read as Character. */
function patchAdapter(adapter: Adapter): Adapter {
  const a = adapter as unknown as {
    client: { query(sql: string): Promise<unknown> };
    performIO(q: unknown): Promise<{ fields: { dataTypeID: number }[]; rows: unknown[] }>;
    queryRaw(q: unknown): Promise<{ columnTypes: number[] }>;
    executeScript(s: string): Promise<void>;
    onError(e: unknown): never;
  };
  const performIO = a.performIO.bind(a);
  let charColumns: number[] = [];
  a.performIO = async (q) => {
    const result = await performIO(q);
    charColumns = [];
    result.fields.forEach((f, i) => {
      if (f.dataTypeID === PG_CHAR_OID) {
        f.dataTypeID = PG_TEXT_OID;
        charColumns.push(i);
      }
    });
    return result;
  };
  const queryRaw = a.queryRaw.bind(a);
  a.queryRaw = async (q) => {
    const rs = await queryRaw(q);
    for (const i of charColumns) rs.columnTypes[i] = ColumnTypeEnum.Character;
    return rs;
  };
  a.executeScript = async (script) => {
    try {
      await a.client.query(script);
    } catch (error) {
      a.onError(error);
    }
  };
  return adapter;
}

function adapterFactory(url: string) {
  const base = new PrismaPg({ connectionString: url });
  const factory = {
    provider: "postgres" as const,
    adapterName: base.adapterName,
    connect: async () => patchAdapter(await base.connect()),
    connectToShadowDb: async () => {
      const shadowName = `wellspring_shadow_${crypto.randomUUID().replaceAll("-", "")}`;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(`CREATE DATABASE "${shadowName}"`);
      await admin.end();
      const shadowUrl = new URL(url);
      shadowUrl.pathname = `/${shadowName}`;
      const shadow = new PrismaPg({ connectionString: shadowUrl.toString() });
      const adapter = patchAdapter(await shadow.connect());
      const dispose = adapter.dispose.bind(adapter);
      adapter.dispose = async () => {
        await dispose().catch(() => {});
        const cleanup = new pg.Client({ connectionString: url });
        await cleanup.connect();
        await cleanup.query(`DROP DATABASE IF EXISTS "${shadowName}" WITH (FORCE)`);
        await cleanup.end();
      };
      return adapter;
    },
  };
  return bindMigrationAwareSqlAdapterFactory(factory);
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<MigrationList> {
  const entries = existsSync(dir) ? (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()) : [];
  entries.sort((a, b) => a.name.localeCompare(b.name));
  const lockPath = join(dir, "migration_lock.toml");
  return {
    baseDir: dir,
    lockfile: { path: "migration_lock.toml", content: existsSync(lockPath) ? await readFile(lockPath, "utf8") : null },
    shadowDbInitScript: "",
    migrationDirectories: await Promise.all(
      entries.map(async (e) => {
        const file = join(dir, e.name, "migration.sql");
        const content = existsSync(file)
          ? { tag: "ok" as const, value: await readFile(file, "utf8") }
          : { tag: "error" as const, value: "migration.sql is missing" };
        return { path: e.name, migrationFile: { path: "migration.sql", content } };
      }),
    ),
  };
}

async function withEngine<T>(url: string, fn: (engine: Engine) => Promise<T>, schemaPath = SCHEMA_PATH): Promise<T> {
  enginePromise ??= loadEngineModule();
  const mod = await enginePromise;
  const schema = await readFile(schemaPath, "utf8");
  const logs: string[] = [];
  const engine = await mod.SchemaEngine.new({ datamodels: [[schemaPath, schema]] }, (line: string) => logs.push(line), adapterFactory(url));
  try {
    return await fn(engine);
  } finally {
    engine.free();
  }
}

/** Applies every migration not yet applied. Returns the names it applied. */
export async function deployMigrations(url: string, dir = MIGRATIONS_DIR): Promise<string[]> {
  const migrationsList = await loadMigrations(dir);
  return withEngine(url, async (engine) => {
    const out = await engine.applyMigrations({ migrationsList, filters: NO_FILTER });
    return out.appliedMigrationNames;
  });
}

/** SQL that would bring a database built from the migrations to schema.prisma ("" when they agree). */
export async function diffMigrationsToSchema(url: string, dir = MIGRATIONS_DIR, schemaPath = SCHEMA_PATH): Promise<string> {
  const migrationsList = await loadMigrations(dir);
  const schema = await readFile(schemaPath, "utf8");
  return withEngine(
    url,
    async (engine) => {
      const from = migrationsList.migrationDirectories.length === 0 ? { tag: "empty" as const } : { tag: "migrations" as const, ...migrationsList };
      const out = await engine.diff({
        from,
        to: { tag: "schemaDatamodel", files: [{ path: schemaPath, content: schema }] },
        script: true,
        exitCode: null,
        filters: NO_FILTER,
      });
      const script = out.stdout ?? "";
      return /^\s*(--[^\n]*\n?\s*)*$/.test(script) || script.includes("This is an empty migration") ? "" : script;
    },
    schemaPath,
  );
}

/** Writes a new migration folder for the difference between the migrations and schema.prisma. */
export async function createMigration(url: string, name: string, dir = MIGRATIONS_DIR, schemaPath = SCHEMA_PATH): Promise<string | null> {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error("migration name: lower-case letters, digits and _ only");
  const script = await diffMigrationsToSchema(url, dir, schemaPath);
  if (script === "") return null;
  const stamp = new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14);
  const folder = join(dir, `${stamp}_${name}`);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, "migration.sql"), script);
  const lock = join(dir, "migration_lock.toml");
  if (!existsSync(lock)) {
    await writeFile(
      lock,
      '# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = "postgresql"\n',
    );
  }
  return folder;
}

async function main(): Promise<void> {
  const [command, arg] = process.argv.slice(2);
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error("Cannot migrate: DATABASE_URL is not set");
  if (command === "deploy") {
    const applied = await deployMigrations(url);
    console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");
  } else if (command === "create") {
    const folder = await createMigration(url, arg ?? "");
    console.log(folder ? `created ${folder}` : "schema.prisma and the migrations agree: nothing to create");
  } else if (command === "check") {
    const script = await diffMigrationsToSchema(url);
    if (script) {
      console.error("schema.prisma and prisma/migrations disagree. Run `npm run db:migrate:create -- <name>`:\n" + script);
      process.exitCode = 1;
    } else console.log("schema.prisma and the migrations agree");
  } else {
    console.error("usage: migrate.ts deploy | create <name> | check   (DATABASE_URL must be set)");
    process.exitCode = 2;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // The engine leaves a timer running; exit explicitly once the work is done.
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(1);
    },
  );
}
