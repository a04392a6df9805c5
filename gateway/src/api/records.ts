/**
 * Per-request records, written in batches off the request path. Never content: sizes, timings, ids.
 */
import type { Db } from "@wellspring/db";
import type { Logger } from "../log.ts";

export type EndCause = "completed" | "client_cancelled" | "upstream_error" | "upstream_timeout" | "agent_lost" | "refused" | "gateway_error";

export interface RequestRecordInput {
  id: string;
  userId: string;
  keyId: string;
  agentId: string | null;
  gatewayId: string;
  route: string;
  provider: string;
  model: string | null;
  streamed: boolean;
  httpStatus: number;
  endCause: EndCause;
  bytesIn: number;
  bytesOut: number;
  startedAt: Date;
  firstByteMs: number | null;
  durationMs: number;
}

/** Records waiting for their batch; past this many, new records are dropped and counted. */
export const RECORD_QUEUE_ENTRIES_MAX = 100_000;
const FLUSH_INTERVAL_MS = 200;
const BATCH_ENTRIES_MAX = 500;

export class RecordWriter {
  #queue: RequestRecordInput[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #flushing: Promise<void> | null = null;
  dropped = 0;

  constructor(private readonly db: Db, private readonly log: Logger) {}

  add(record: RequestRecordInput): void {
    if (this.#queue.length >= RECORD_QUEUE_ENTRIES_MAX) {
      this.dropped++;
      return;
    }
    this.#queue.push(record);
    this.#timer ??= setTimeout(() => void this.flush(), FLUSH_INTERVAL_MS);
  }

  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    while (this.#flushing) await this.#flushing;
    if (this.#queue.length === 0) return;
    const batch = this.#queue.splice(0, BATCH_ENTRIES_MAX);
    this.#flushing = this.db.requestRecord
      .createMany({
        data: batch.map((r) => ({ ...r, bytesIn: BigInt(r.bytesIn), bytesOut: BigInt(r.bytesOut) })),
        skipDuplicates: true,
      })
      .then(
        () => undefined,
        (error: unknown) => {
          this.log.error("records.write_failed", { count: batch.length, error });
        },
      )
      .finally(() => {
        this.#flushing = null;
      });
    await this.#flushing;
    if (this.#queue.length > 0) await this.flush();
  }
}
