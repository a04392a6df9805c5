export * from "./client.ts";
export * from "./ids.ts";
export { deployMigrations, diffMigrationsToSchema, createMigration } from "./migrate.ts";
export { startEmbeddedPostgres, type EmbeddedDb } from "./embedded.ts";
export * from "./prices.ts";
export * from "./events.ts";
