-- AlterTable
ALTER TABLE "agents" ADD COLUMN     "rate_reported_at" TIMESTAMPTZ(3),
ADD COLUMN     "reported_rpm" INTEGER,
ADD COLUMN     "reported_tpm" INTEGER;

-- AlterTable
ALTER TABLE "gateways" ADD COLUMN     "limits_degraded_since" TIMESTAMPTZ(3);
