-- AlterTable
ALTER TABLE "agents" ADD COLUMN     "connected_gateway" TEXT,
ADD COLUMN     "presence_expires_at" TIMESTAMPTZ(3);

-- AlterTable
ALTER TABLE "risk_flags" ADD COLUMN     "last_raised_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
ADD COLUMN     "open_key" TEXT,
ADD COLUMN     "raised_count" INTEGER NOT NULL DEFAULT 1;

-- CreateIndex
CREATE UNIQUE INDEX "risk_flags_open_key_key" ON "risk_flags"("open_key");

-- Flags raised before this migration: their own creation time, and the oldest open flag of each kind and
-- subject becomes the one later raises update.
UPDATE "risk_flags" SET "last_raised_at" = "created_at";
UPDATE "risk_flags" f SET "open_key" = f."kind" || ':' || f."subject"
  WHERE f."status" = 'open' AND f."id" = (
    SELECT g."id" FROM "risk_flags" g WHERE g."kind" = f."kind" AND g."subject" = f."subject" AND g."status" = 'open'
    ORDER BY g."created_at", g."id" LIMIT 1);
-- A decided flag gives its key up, so the next raise opens a new flag.
ALTER TABLE "risk_flags" ADD CONSTRAINT "risk_flags_open_key_only_open" CHECK ("status" = 'open' OR "open_key" IS NULL);
ALTER TABLE "risk_flags" ADD CONSTRAINT "risk_flags_raised_count_positive" CHECK ("raised_count" >= 1);
