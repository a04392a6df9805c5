-- CreateEnum
CREATE TYPE "EarningHoldStatus" AS ENUM ('held', 'released');

-- CreateTable
CREATE TABLE "earning_holds" (
    "id" TEXT NOT NULL,
    "owner_id" TEXT NOT NULL,
    "agent_id" TEXT,
    "request_id" TEXT,
    "flag_id" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "amount_micros" BIGINT NOT NULL,
    "status" "EarningHoldStatus" NOT NULL DEFAULT 'held',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "released_at" TIMESTAMPTZ(3),
    "released_by" TEXT,

    CONSTRAINT "earning_holds_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "earning_holds_request_id_key" ON "earning_holds"("request_id");

-- CreateIndex
CREATE INDEX "earning_holds_owner_id_status_idx" ON "earning_holds"("owner_id", "status");

-- CreateIndex
CREATE INDEX "earning_holds_flag_id_idx" ON "earning_holds"("flag_id");

-- A hold keeps a positive earning out of what the owner may withdraw.
ALTER TABLE "earning_holds" ADD CONSTRAINT "earning_holds_amount_positive" CHECK ("amount_micros" > 0);
