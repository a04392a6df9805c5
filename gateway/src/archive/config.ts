/** The archive's configuration from the gateway environment (env.ts): the store and the job's options. */
import { join, resolve } from "node:path";
import type { GatewayEnv } from "../env.ts";
import { DirArchiveStore, S3ArchiveStore, type ArchiveStore } from "./store.ts";

export interface ArchiveConfig {
  store: ArchiveStore;
  afterDays: number;
  partRowsMax: number;
  batchRowsMax: number;
  /** How often a gateway runs the job (0: never; partitions are still made ahead), ms. */
  intervalMs: number;
}

/** S3 when ARCHIVE_S3_BUCKET is set (ARCHIVE_S3_ENDPOINT for a non-AWS server), else the directory ARCHIVE_DIR. */
export function archiveConfigFromEnv(env: GatewayEnv): ArchiveConfig {
  const store: ArchiveStore = env.ARCHIVE_S3_BUCKET
    ? new S3ArchiveStore({
        endpoint: env.ARCHIVE_S3_ENDPOINT ?? null,
        region: env.ARCHIVE_S3_REGION,
        bucket: env.ARCHIVE_S3_BUCKET,
        prefix: env.ARCHIVE_S3_PREFIX,
        credentials:
          env.ARCHIVE_S3_ACCESS_KEY_ID && env.ARCHIVE_S3_SECRET_ACCESS_KEY
            ? { accessKeyId: env.ARCHIVE_S3_ACCESS_KEY_ID, secretAccessKey: env.ARCHIVE_S3_SECRET_ACCESS_KEY }
            : null,
        forcePathStyle:
          env.ARCHIVE_S3_FORCE_PATH_STYLE === undefined
            ? Boolean(env.ARCHIVE_S3_ENDPOINT)
            : env.ARCHIVE_S3_FORCE_PATH_STYLE === "1" || env.ARCHIVE_S3_FORCE_PATH_STYLE === "true",
      })
    : new DirArchiveStore(resolve(env.ARCHIVE_DIR ?? join(env.DATA_DIR, "archive")));
  return {
    store,
    afterDays: env.ARCHIVE_AFTER_DAYS,
    partRowsMax: env.ARCHIVE_PART_ROWS,
    batchRowsMax: env.ARCHIVE_BATCH_ROWS,
    intervalMs: env.ARCHIVE_INTERVAL_MS,
  };
}
