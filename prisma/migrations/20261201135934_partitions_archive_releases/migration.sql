-- CreateEnum
CREATE TYPE "ArchiveStatus" AS ENUM ('exporting', 'archived', 'restored');

-- AlterTable
ALTER TABLE "agents" ADD COLUMN     "version_refused_at" TIMESTAMPTZ(3);

-- Partitioning (hand-written: schema.prisma sees only the primary keys, which now include the partition key).
-- `request_records` and `journal_entries` become tables partitioned by range of a timestamptz, one partition per
-- UTC day (`<table>_pYYYYMMDD`) and a default partition for rows outside every day partition. The existing rows
-- are copied into day partitions; the archive job (gateway/src/archive/) moves old days to the archive store.

-- The partition of `parent` for the UTC day `day` (rows of `col` in [day 00:00Z, day+1 00:00Z)), made if missing.
-- Rows of that day waiting in the default partition are moved into it. Serialised by an advisory lock, so
-- gateways starting together do not race on the catalog.
CREATE OR REPLACE FUNCTION wellspring_day_partition(parent text, col text, day date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  part text := parent || '_p' || to_char(day, 'YYYYMMDD');
  lo text := to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00';
  hi text := to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00';
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('wellspring_day_partition'));
  IF to_regclass(quote_ident(part)) IS NOT NULL THEN
    RETURN part;
  END IF;
  EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
  IF to_regclass(quote_ident(parent || '_default')) IS NOT NULL THEN
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
      parent || '_default', col, lo, col, hi, part);
  END IF;
  EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part, lo, hi);
  RETURN part;
END $$;

-- Day partitions of both hot tables from `from_day` to `to_day` (UTC), made if missing. The gateway calls it at
-- start and every hour for yesterday … today + ARCHIVE_PARTITIONS_AHEAD_DAYS, so rows never wait in the default.
CREATE OR REPLACE FUNCTION wellspring_ensure_partitions(from_day date, to_day date) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  d date;
  n int := 0;
BEGIN
  FOR d IN SELECT generate_series(from_day, to_day, interval '1 day')::date LOOP
    PERFORM wellspring_day_partition('request_records', 'started_at', d);
    PERFORM wellspring_day_partition('journal_entries', 'created_at', d);
    n := n + 1;
  END LOOP;
  RETURN n;
END $$;

-- request_records: the old table steps aside (its constraint and index names are taken by the new one).
ALTER TABLE "request_records" RENAME TO "request_records_unpartitioned";
ALTER TABLE "request_records_unpartitioned" RENAME CONSTRAINT "request_records_pkey" TO "request_records_unpartitioned_pkey";
ALTER INDEX "request_records_user_id_started_at_idx" RENAME TO "request_records_unpartitioned_user_idx";
ALTER INDEX "request_records_key_id_started_at_idx" RENAME TO "request_records_unpartitioned_key_idx";
ALTER INDEX "request_records_agent_id_started_at_idx" RENAME TO "request_records_unpartitioned_agent_idx";
CREATE TABLE "request_records" (LIKE "request_records_unpartitioned" INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE ("started_at");
ALTER TABLE "request_records" ADD CONSTRAINT "request_records_pkey" PRIMARY KEY ("id", "started_at");
CREATE INDEX "request_records_user_id_started_at_idx" ON "request_records"("user_id", "started_at" DESC);
CREATE INDEX "request_records_key_id_started_at_idx" ON "request_records"("key_id", "started_at" DESC);
CREATE INDEX "request_records_agent_id_started_at_idx" ON "request_records"("agent_id", "started_at" DESC);
ALTER TABLE "request_records" ADD CONSTRAINT "request_records_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "request_records" ADD CONSTRAINT "request_records_key_id_fkey" FOREIGN KEY ("key_id") REFERENCES "virtual_keys"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "request_records" ADD CONSTRAINT "request_records_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "agents"("id") ON DELETE SET NULL ON UPDATE CASCADE;
CREATE TABLE "request_records_default" PARTITION OF "request_records" DEFAULT;

-- journal_entries: the same, and its id sequence moves to the new table.
ALTER SEQUENCE "journal_entries_id_seq" OWNED BY NONE;
ALTER TABLE "journal_entries" RENAME TO "journal_entries_unpartitioned";
ALTER TABLE "journal_entries_unpartitioned" RENAME CONSTRAINT "journal_entries_pkey" TO "journal_entries_unpartitioned_pkey";
ALTER INDEX "journal_entries_tx_id_idx" RENAME TO "journal_entries_unpartitioned_tx_idx";
ALTER INDEX "journal_entries_account_created_at_idx" RENAME TO "journal_entries_unpartitioned_account_idx";
CREATE TABLE "journal_entries" (LIKE "journal_entries_unpartitioned" INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE ("created_at");
ALTER SEQUENCE "journal_entries_id_seq" OWNED BY "journal_entries"."id";
ALTER TABLE "journal_entries" ADD CONSTRAINT "journal_entries_pkey" PRIMARY KEY ("id", "created_at");
CREATE INDEX "journal_entries_tx_id_idx" ON "journal_entries"("tx_id");
CREATE INDEX "journal_entries_account_created_at_idx" ON "journal_entries"("account", "created_at");
CREATE TABLE "journal_entries_default" PARTITION OF "journal_entries" DEFAULT;

-- Day partitions for every day that has rows, and for yesterday … a week ahead; then the rows move in.
SELECT wellspring_day_partition('request_records', 'started_at', d)
FROM (SELECT DISTINCT ("started_at" AT TIME ZONE 'UTC')::date AS d FROM "request_records_unpartitioned") AS days;
SELECT wellspring_day_partition('journal_entries', 'created_at', d)
FROM (SELECT DISTINCT ("created_at" AT TIME ZONE 'UTC')::date AS d FROM "journal_entries_unpartitioned") AS days;
SELECT wellspring_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 7);
INSERT INTO "request_records" SELECT * FROM "request_records_unpartitioned";
INSERT INTO "journal_entries" SELECT * FROM "journal_entries_unpartitioned";
DROP TABLE "request_records_unpartitioned";
DROP TABLE "journal_entries_unpartitioned";

-- CreateTable
CREATE TABLE "archive_manifests" (
    "table_name" TEXT NOT NULL,
    "day" DATE NOT NULL,
    "seq" INTEGER NOT NULL,
    "status" "ArchiveStatus" NOT NULL,
    "object_key" TEXT NOT NULL,
    "rows" INTEGER NOT NULL DEFAULT 0,
    "content_sha256" TEXT NOT NULL DEFAULT '',
    "object_sha256" TEXT NOT NULL DEFAULT '',
    "object_bytes" BIGINT NOT NULL DEFAULT 0,
    "totals" JSONB NOT NULL DEFAULT '{}',
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "archived_at" TIMESTAMPTZ(3),
    "restored_at" TIMESTAMPTZ(3),

    CONSTRAINT "archive_manifests_pkey" PRIMARY KEY ("table_name","day","seq")
);

-- CreateTable
CREATE TABLE "journal_archive_totals" (
    "day" DATE NOT NULL,
    "seq" INTEGER NOT NULL,
    "account" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "amount_micros" BIGINT NOT NULL,
    "entries" INTEGER NOT NULL,

    CONSTRAINT "journal_archive_totals_pkey" PRIMARY KEY ("day","seq","account","kind")
);

-- CreateTable
CREATE TABLE "agent_releases" (
    "version" TEXT NOT NULL,
    "manifest" TEXT NOT NULL,
    "signatures" TEXT NOT NULL,
    "bundle" BYTEA NOT NULL,
    "published_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "published_by" TEXT NOT NULL,

    CONSTRAINT "agent_releases_pkey" PRIMARY KEY ("version")
);

-- CreateTable
CREATE TABLE "agent_release_policy" (
    "id" INTEGER NOT NULL DEFAULT 1,
    "latest_version" TEXT,
    "minimum_version" TEXT,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "agent_release_policy_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "journal_archive_totals_account_kind_idx" ON "journal_archive_totals"("account", "kind");

-- One policy row; releases are immutable once published (a version names one bundle forever).
INSERT INTO "agent_release_policy" ("id") VALUES (1);
ALTER TABLE "agent_release_policy" ADD CONSTRAINT "agent_release_policy_one_row" CHECK ("id" = 1);
CREATE OR REPLACE FUNCTION wellspring_release_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'agent release % is immutable: publish a new version', OLD.version;
END $$;
CREATE TRIGGER agent_releases_immutable BEFORE UPDATE OR DELETE ON "agent_releases" FOR EACH ROW EXECUTE FUNCTION wellspring_release_immutable();

-- Archive bookkeeping stays consistent: counts are never negative, a slice is archived only with its checksums.
ALTER TABLE "archive_manifests" ADD CONSTRAINT "archive_manifests_table" CHECK ("table_name" IN ('request_records', 'journal_entries'));
ALTER TABLE "archive_manifests" ADD CONSTRAINT "archive_manifests_counts" CHECK ("rows" >= 0 AND "object_bytes" >= 0 AND "seq" >= 1);
ALTER TABLE "archive_manifests" ADD CONSTRAINT "archive_manifests_archived_checked" CHECK ("status" <> 'archived' OR ("content_sha256" <> '' AND "object_sha256" <> '' AND "archived_at" IS NOT NULL));

-- An account's balance over the whole journal: its entries still in the hot table plus the sums of its archived
-- days (journal_archive_totals). `kind` NULL: every kind. Used by balances, payouts and the audit, which must see
-- the same money before and after a day is archived.
CREATE OR REPLACE FUNCTION wellspring_account_total(acct text, entry_kind text DEFAULT NULL) RETURNS bigint LANGUAGE sql STABLE AS $$
  SELECT COALESCE((SELECT SUM(amount_micros) FROM journal_entries WHERE account = acct AND (entry_kind IS NULL OR kind = entry_kind)), 0)::bigint
       + COALESCE((SELECT SUM(amount_micros) FROM journal_archive_totals WHERE account = acct AND (entry_kind IS NULL OR kind = entry_kind)), 0)::bigint
$$;
