-- CreateEnum
CREATE TYPE "RiskFlagStatus" AS ENUM ('open', 'approved', 'dismissed', 'suspended');

-- CreateTable
CREATE TABLE "risk_flags" (
    "id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "subject" TEXT NOT NULL,
    "severity" INTEGER NOT NULL DEFAULT 2,
    "evidence" JSONB NOT NULL DEFAULT '{}',
    "status" "RiskFlagStatus" NOT NULL DEFAULT 'open',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "decided_at" TIMESTAMPTZ(3),
    "decided_by" TEXT,
    "note" TEXT,

    CONSTRAINT "risk_flags_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "risk_flags_status_created_at_idx" ON "risk_flags"("status", "created_at");
ALTER TABLE "risk_flags" ADD CONSTRAINT "risk_flags_severity_range" CHECK ("severity" BETWEEN 1 AND 3);
