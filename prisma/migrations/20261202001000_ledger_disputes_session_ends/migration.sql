-- AlterTable
ALTER TABLE "agent_receipts" ADD COLUMN     "dispute_detail" TEXT,
ADD COLUMN     "disputed" TEXT,
ALTER COLUMN "request_id" DROP NOT NULL,
ALTER COLUMN "countersignature" DROP NOT NULL;

-- CreateTable
CREATE TABLE "agent_session_ends" (
    "id" BIGSERIAL NOT NULL,
    "agent_id" TEXT NOT NULL,
    "ended_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "agent_session_ends_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "agent_session_ends_agent_id_ended_at_idx" ON "agent_session_ends"("agent_id", "ended_at");
