// Generates the Prisma client offline. `prisma generate` only needs a schema engine path to exist; the
// Rust-free `prisma-client` generator never runs it (see docs/operations/database.md).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

const dummy = process.platform === "win32" ? process.execPath : "/bin/true";
const env = {
  ...process.env,
  PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? dummy,
  PRISMA_HIDE_UPDATE_MESSAGE: "1",
  CHECKPOINT_DISABLE: "1",
};
const bin = "node_modules/.bin/prisma";
if (!existsSync(bin)) {
  console.error("prisma-generate: node_modules/.bin/prisma is missing; run npm install first");
  process.exit(1);
}
const r = spawnSync(bin, ["generate", "--config", "prisma/prisma.config.ts"], { stdio: "inherit", env });
process.exit(r.status ?? 1);
