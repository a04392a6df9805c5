import "server-only";
import pg from "pg";
import { createDb, type Db } from "@wellspring/db/core";

/** One Prisma client and one pool per server process (kept across hot reloads in development). */
const g = globalThis as { __wsDb?: Db; __wsPool?: pg.Pool };

function url(): string {
  const u = process.env.DATABASE_URL;
  if (!u) throw new Error("The portal needs DATABASE_URL (npm start passes the hub's database)");
  return u;
}

export function db(): Db {
  return (g.__wsDb ??= createDb(url(), { poolConnectionsMax: 5 }));
}

export function pool(): pg.Pool {
  if (!g.__wsPool) {
    g.__wsPool = new pg.Pool({ connectionString: url(), max: 5 });
    g.__wsPool.on("error", () => {});
  }
  return g.__wsPool;
}
