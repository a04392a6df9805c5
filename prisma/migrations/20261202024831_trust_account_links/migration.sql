-- AlterTable
ALTER TABLE "users" ADD COLUMN     "payout_destination" TEXT;

-- CreateTable
CREATE TABLE "account_signals" (
    "user_id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "value_key" TEXT NOT NULL,
    "seen_count" INTEGER NOT NULL DEFAULT 1,
    "first_seen_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_seen_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "account_signals_pkey" PRIMARY KEY ("user_id","kind","value_key")
);

-- CreateTable
CREATE TABLE "account_links" (
    "user_id" TEXT NOT NULL,
    "linked_user_id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "seen_count" INTEGER NOT NULL DEFAULT 1,
    "first_seen_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_seen_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "account_links_pkey" PRIMARY KEY ("user_id","linked_user_id","kind")
);

-- CreateIndex
CREATE INDEX "account_signals_kind_value_key_idx" ON "account_signals"("kind", "value_key");
