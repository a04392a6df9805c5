/**
 * Whether this gateway can reach the ledger (PostgreSQL) now. Every ledger call reports its outcome here;
 * readiness (`/readyz`) and the decision to spool a settlement instead of trying the database read it.
 */
import type { Logger } from "../log.ts";

export class LedgerHealth {
  #downSince: number | null = null;
  #lastError = "";

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get up(): boolean {
    return this.#downSince === null;
  }

  /** Since when the ledger has been unreachable (epoch ms), or null. */
  get downSince(): number | null {
    return this.#downSince;
  }

  ok(): void {
    if (this.#downSince === null) return;
    this.log.info("ledger.reachable", { downMs: this.now() - this.#downSince });
    this.#downSince = null;
  }

  failed(error: unknown): void {
    this.#lastError = error instanceof Error ? error.message : String(error);
    if (this.#downSince !== null) return;
    this.#downSince = this.now();
    this.log.error("ledger.unreachable", { error: this.#lastError, note: "settlements go to the spool; new credit is not granted until it is back" });
  }

  get lastError(): string {
    return this.#lastError;
  }
}

/** The ledger cannot be reached (or this gateway's leases are too old to trust): no new credit until it is back. */
export class LedgerUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LedgerUnavailableError";
  }
}

/**
 * Error codes that mean the database cannot be reached (as opposed to a failed statement): Node's socket
 * errors, PostgreSQL's admin-shutdown and connection classes (57P0x, 08xxx), and Prisma's connection errors
 * (P1001 cannot reach, P1002/P1008 timed out, P1017 server closed the connection, P2024 no pool connection).
 */
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "57P01",
  "57P02",
  "57P03",
  "P1001",
  "P1002",
  "P1008",
  "P1017",
  "P2024",
]);
const UNREACHABLE_MESSAGES =
  /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|the database system is (starting up|shutting down)|Can't reach database server|Server has closed the connection/i;

/** True when `error` says the database is unreachable (retry later), false for an error of the statement itself. */
export function isUnavailable(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (UNREACHABLE_CODES.has(code) || code.startsWith("08"))) return true;
    if (e instanceof LedgerUnavailableError) return true;
    if (e instanceof Error && UNREACHABLE_MESSAGES.test(e.message)) return true;
    if (e instanceof AggregateError && e.errors.some((x) => isUnavailable(x))) return true;
  }
  return false;
}
