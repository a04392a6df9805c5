-- CreateTable
CREATE TABLE "agent_breakers" (
    "gateway_id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "model" TEXT NOT NULL,
    "state" TEXT NOT NULL,
    "since" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "agent_breakers_pkey" PRIMARY KEY ("gateway_id","agent_id","model")
);

-- CreateIndex
CREATE INDEX "agent_breakers_agent_id_idx" ON "agent_breakers"("agent_id");
