/**
 * The portal's liveness and readiness (answered by web/server.ts before Next.js sees the request):
 * `/healthz` — the process answers; `/readyz` — and the hub's database answers a query within
 * READINESS_QUERY_TIMEOUT_MS (the answer is reused for READINESS_CACHE_MS, so probes cost one query a second).
 */
import pg from "pg";

export const READINESS_QUERY_TIMEOUT_MS = 2_000;
export const READINESS_CACHE_MS = 1_000;

export class Readiness {
  #pool: pg.Pool | null;
  #last: { at: number; ready: boolean; error: string | null } | null = null;
  #pending: Promise<{ ready: boolean; error: string | null }> | null = null;

  constructor(
    databaseUrl: string | undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.#pool = databaseUrl
      ? new pg.Pool({ connectionString: databaseUrl, max: 1, connectionTimeoutMillis: READINESS_QUERY_TIMEOUT_MS, query_timeout: READINESS_QUERY_TIMEOUT_MS })
      : null;
    this.#pool?.on("error", () => {});
  }

  async check(): Promise<{ ready: boolean; error: string | null }> {
    if (this.#last && this.now() - this.#last.at < READINESS_CACHE_MS) return this.#last;
    this.#pending ??= this.#probe().finally(() => {
      this.#pending = null;
    });
    return this.#pending;
  }

  async #probe(): Promise<{ ready: boolean; error: string | null }> {
    let out: { ready: boolean; error: string | null };
    if (!this.#pool) out = { ready: false, error: "DATABASE_URL is not set" };
    else {
      try {
        await this.#pool.query("SELECT 1");
        out = { ready: true, error: null };
      } catch (error) {
        out = { ready: false, error: (error as Error).message };
      }
    }
    this.#last = { at: this.now(), ...out };
    return out;
  }

  async close(): Promise<void> {
    await this.#pool?.end();
  }
}
