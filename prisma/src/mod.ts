export * from "./core.ts";
export { deployMigrations, diffMigrationsToSchema, createMigration } from "./migrate.ts";
export { startEmbeddedPostgres, takeOverEmbeddedPostgresSignals, type EmbeddedDb } from "./embedded.ts";
