-- CreateEnum
CREATE TYPE "PlanKind" AS ENUM ('standard', 'promotional', 'premium');

-- CreateEnum
CREATE TYPE "PayoutStatus" AS ENUM ('requested', 'paid', 'cancelled');

-- AlterTable
ALTER TABLE "agents" ADD COLUMN     "discount_lane" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN     "price_ver" INTEGER;

-- AlterTable
ALTER TABLE "request_records" ADD COLUMN     "owner_earning_micros" BIGINT,
ADD COLUMN     "price_ver" INTEGER,
ADD COLUMN     "tier" "AgentTier",
ADD COLUMN     "tier_bps" INTEGER,
ADD COLUMN     "usage_estimated" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN     "user_charge_micros" BIGINT;

-- AlterTable
ALTER TABLE "reservations" ADD COLUMN     "agent_id" TEXT,
ADD COLUMN     "api" TEXT,
ADD COLUMN     "cached_input_tokens" INTEGER,
ADD COLUMN     "earning_micros" BIGINT,
ADD COLUMN     "end_cause" "EndCause",
ADD COLUMN     "estimated" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN     "input_tokens" INTEGER,
ADD COLUMN     "model" TEXT,
ADD COLUMN     "output_tokens" INTEGER,
ADD COLUMN     "owner_id" TEXT,
ADD COLUMN     "plan_id" TEXT,
ADD COLUMN     "price_ver" INTEGER,
ADD COLUMN     "tier" "AgentTier",
ADD COLUMN     "tier_bps" INTEGER;

-- AlterTable
ALTER TABLE "users" ADD COLUMN     "plan_id" TEXT;

-- CreateTable
CREATE TABLE "tier_coefficients" (
    "tier" "AgentTier" NOT NULL,
    "bps" INTEGER NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "tier_coefficients_pkey" PRIMARY KEY ("tier")
);

-- CreateTable
CREATE TABLE "plans" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "kind" "PlanKind" NOT NULL,
    "multiplier_bps" INTEGER NOT NULL,
    "is_default" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "plans_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "plan_model_prices" (
    "plan_id" TEXT NOT NULL,
    "api" TEXT NOT NULL,
    "model" TEXT NOT NULL,
    "input_micros_per_mtok" BIGINT NOT NULL,
    "output_micros_per_mtok" BIGINT NOT NULL,
    "cached_input_micros_per_mtok" BIGINT NOT NULL,

    CONSTRAINT "plan_model_prices_pkey" PRIMARY KEY ("plan_id","api","model")
);

-- CreateTable
CREATE TABLE "redemption_batches" (
    "id" TEXT NOT NULL,
    "amount_micros" BIGINT NOT NULL,
    "code_count" INTEGER NOT NULL,
    "note" TEXT,
    "created_by" TEXT NOT NULL,
    "expires_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "redemption_batches_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "redemption_codes" (
    "id" TEXT NOT NULL,
    "batch_id" TEXT NOT NULL,
    "code_hash" TEXT NOT NULL,
    "redeemed_by" TEXT,
    "redeemed_at" TIMESTAMPTZ(3),

    CONSTRAINT "redemption_codes_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "payouts" (
    "id" TEXT NOT NULL,
    "owner_id" TEXT NOT NULL,
    "amount_micros" BIGINT NOT NULL,
    "status" "PayoutStatus" NOT NULL DEFAULT 'requested',
    "requested_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "decided_at" TIMESTAMPTZ(3),
    "decided_by" TEXT,
    "reference" TEXT,

    CONSTRAINT "payouts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_events" (
    "id" BIGSERIAL NOT NULL,
    "actor" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "subject" TEXT NOT NULL,
    "detail" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "audit_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "plans_name_key" ON "plans"("name");

-- CreateIndex
CREATE UNIQUE INDEX "redemption_codes_code_hash_key" ON "redemption_codes"("code_hash");

-- CreateIndex
CREATE INDEX "redemption_codes_batch_id_idx" ON "redemption_codes"("batch_id");

-- CreateIndex
CREATE INDEX "payouts_owner_id_requested_at_idx" ON "payouts"("owner_id", "requested_at");

-- CreateIndex
CREATE INDEX "audit_events_subject_created_at_idx" ON "audit_events"("subject", "created_at");

-- CreateIndex
CREATE INDEX "audit_events_created_at_idx" ON "audit_events"("created_at");

-- CreateIndex
CREATE INDEX "reservations_owner_id_settled_at_idx" ON "reservations"("owner_id", "settled_at");

-- AddForeignKey
ALTER TABLE "users" ADD CONSTRAINT "users_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plans"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "plan_model_prices" ADD CONSTRAINT "plan_model_prices_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plans"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "redemption_codes" ADD CONSTRAINT "redemption_codes_batch_id_fkey" FOREIGN KEY ("batch_id") REFERENCES "redemption_batches"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "payouts" ADD CONSTRAINT "payouts_owner_id_fkey" FOREIGN KEY ("owner_id") REFERENCES "users"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Invariants the database itself enforces (not expressible in schema.prisma).
ALTER TABLE "tier_coefficients" ADD CONSTRAINT "tier_coefficients_bps_range" CHECK ("bps" >= 0 AND "bps" <= 10000);
ALTER TABLE "plans" ADD CONSTRAINT "plans_multiplier_positive" CHECK ("multiplier_bps" > 0);
ALTER TABLE "plan_model_prices" ADD CONSTRAINT "plan_model_prices_nonnegative" CHECK ("input_micros_per_mtok" >= 0 AND "output_micros_per_mtok" >= 0 AND "cached_input_micros_per_mtok" >= 0);
ALTER TABLE "redemption_batches" ADD CONSTRAINT "redemption_batches_amount_positive" CHECK ("amount_micros" > 0 AND "code_count" > 0);
ALTER TABLE "payouts" ADD CONSTRAINT "payouts_amount_positive" CHECK ("amount_micros" > 0);
ALTER TABLE "reservations" ADD CONSTRAINT "reservations_earning_within_charge" CHECK ("earning_micros" IS NULL OR ("earning_micros" >= 0 AND "earning_micros" <= "charge_micros"));
ALTER TABLE "redemption_codes" ADD CONSTRAINT "redemption_codes_redeemed_together" CHECK (("redeemed_by" IS NULL) = ("redeemed_at" IS NULL));

-- The audit trail is append-only.
CREATE OR REPLACE FUNCTION wellspring_refuse_audit_change() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'the audit trail is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON "audit_events"
  FOR EACH ROW EXECUTE FUNCTION wellspring_refuse_audit_change();

-- Seed: the tier shares of the mission (S 0.9, A 0.7; discount lane 0.5 until an admin changes it) and the
-- default plan (users pay the official price).
INSERT INTO "tier_coefficients" ("tier", "bps") VALUES ('S', 9000), ('A', 7000), ('discount', 5000);
INSERT INTO "plans" ("id", "name", "kind", "multiplier_bps", "is_default") VALUES ('plan_standard', 'Standard', 'standard', 10000, true);
