// Prisma CLI configuration. The hub itself never reads this file: it builds its client from DATABASE_URL
// (or the embedded PostgreSQL) and migrates with prisma/src/migrate.ts (the Wasm schema engine, offline).
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "schema.prisma",
  migrations: { path: "migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/wellspring" },
});
