/** One Prisma client per process, over node-postgres (the Rust-free client). */
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../generated/client.ts";

export type Db = PrismaClient;
export { PrismaClient };
export * from "../generated/enums.ts";

export interface DbOptions {
  /** Connections in the pool. Default 10. */
  poolConnectionsMax?: number;
}

export function createDb(url: string, options: DbOptions = {}): Db {
  const adapter = new PrismaPg({ connectionString: url, max: options.poolConnectionsMax ?? 10 });
  return new PrismaClient({ adapter });
}
