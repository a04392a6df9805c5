/**
 * The scheduled archive job inside each gateway: shortly after start and then every ARCHIVE_INTERVAL_MS, make
 * the day partitions ahead and archive the days older than the retention. A session advisory lock makes one
 * run at a time across all gateways (and `npm run archive`); the others skip that tick. A run killed with its
 * gateway is finished by the next one (archiver.ts). With the interval at 0 only partitions are made (hourly).
 */
import type { Logger } from "../log.ts";
import { Archiver } from "./archiver.ts";
import type { ArchiveConfig } from "./config.ts";

/** The first run waits this long after start, so a starting gateway serves first, ms. */
export const ARCHIVE_FIRST_RUN_DELAY_MS = 30_000;
/** Partition upkeep interval when the archive job is off, ms. */
export const PARTITION_UPKEEP_INTERVAL_MS = 3_600_000;

export class ArchiveJob {
  readonly archiver: Archiver;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running: Promise<void> | null = null;
  #closed = false;

  constructor(
    databaseUrl: string,
    private readonly config: ArchiveConfig,
    private readonly log: Logger,
  ) {
    this.archiver = new Archiver(databaseUrl, config.store, {
      log,
      afterDays: config.afterDays,
      partRowsMax: config.partRowsMax,
      batchRowsMax: config.batchRowsMax,
    });
  }

  /** Makes today's and the coming days' partitions now, then schedules the job. */
  async start(): Promise<void> {
    await this.archiver.ensurePartitions();
    this.log.info("archive.schedule", { store: this.config.store.location, afterDays: this.config.afterDays, intervalMs: this.config.intervalMs });
    this.#schedule(ARCHIVE_FIRST_RUN_DELAY_MS);
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#tick().finally(() => {
        this.#running = null;
        this.#schedule(this.config.intervalMs > 0 ? this.config.intervalMs : PARTITION_UPKEEP_INTERVAL_MS);
      });
    }, delayMs);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    try {
      if (this.config.intervalMs === 0) {
        await this.archiver.ensurePartitions();
        return;
      }
      const report = await this.archiver.run();
      if (report.ran && (report.archived.length > 0 || report.deferred.length > 0)) {
        this.log.info("archive.run", { archived: report.archived.length, rows: report.archived.reduce((n, s) => n + s.rows, 0), deferred: report.deferred });
      }
    } catch (error) {
      this.log.error("archive.run_failed", { error, note: "nothing was removed that is not archived; the next run starts the slice over" });
    }
  }

  /** Stops scheduling; a run in progress is left to finish or die with the process (it is crash-safe). */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  get running(): boolean {
    return this.#running !== null;
  }
}
