-- CreateEnum
CREATE TYPE "ReservationStatus" AS ENUM ('held', 'settled');

-- CreateTable
CREATE TABLE "price_versions" (
    "ver" INTEGER NOT NULL,
    "published_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "note" TEXT,

    CONSTRAINT "price_versions_pkey" PRIMARY KEY ("ver")
);

-- CreateTable
CREATE TABLE "model_prices" (
    "ver" INTEGER NOT NULL,
    "provider" TEXT NOT NULL,
    "model" TEXT NOT NULL,
    "input_micros_per_mtok" BIGINT NOT NULL,
    "output_micros_per_mtok" BIGINT NOT NULL,
    "cached_input_micros_per_mtok" BIGINT NOT NULL,

    CONSTRAINT "model_prices_pkey" PRIMARY KEY ("ver","provider","model")
);

-- CreateTable
CREATE TABLE "wallets" (
    "user_id" TEXT NOT NULL,
    "available_micros" BIGINT NOT NULL DEFAULT 0,
    "reserved_micros" BIGINT NOT NULL DEFAULT 0,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "wallets_pkey" PRIMARY KEY ("user_id")
);

-- CreateTable
CREATE TABLE "reservations" (
    "request_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "amount_micros" BIGINT NOT NULL,
    "status" "ReservationStatus" NOT NULL DEFAULT 'held',
    "charge_micros" BIGINT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "settled_at" TIMESTAMPTZ(3),

    CONSTRAINT "reservations_pkey" PRIMARY KEY ("request_id")
);

-- CreateTable
CREATE TABLE "journal_entries" (
    "id" BIGSERIAL NOT NULL,
    "tx_id" TEXT NOT NULL,
    "account" TEXT NOT NULL,
    "amount_micros" BIGINT NOT NULL,
    "kind" TEXT NOT NULL,
    "request_id" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "journal_entries_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "reservations_user_id_status_idx" ON "reservations"("user_id", "status");

-- CreateIndex
CREATE INDEX "journal_entries_tx_id_idx" ON "journal_entries"("tx_id");

-- CreateIndex
CREATE INDEX "journal_entries_account_created_at_idx" ON "journal_entries"("account", "created_at");

-- AddForeignKey
ALTER TABLE "model_prices" ADD CONSTRAINT "model_prices_ver_fkey" FOREIGN KEY ("ver") REFERENCES "price_versions"("ver") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Invariants the database itself enforces (not expressible in schema.prisma).
ALTER TABLE "wallets" ADD CONSTRAINT "wallets_available_nonnegative" CHECK ("available_micros" >= 0);
ALTER TABLE "wallets" ADD CONSTRAINT "wallets_reserved_nonnegative" CHECK ("reserved_micros" >= 0);
ALTER TABLE "reservations" ADD CONSTRAINT "reservations_amount_nonnegative" CHECK ("amount_micros" >= 0);
ALTER TABLE "reservations" ADD CONSTRAINT "reservations_charge_within_amount" CHECK ("charge_micros" IS NULL OR ("charge_micros" >= 0 AND "charge_micros" <= "amount_micros"));
