-- CreateTable
CREATE TABLE "egress_probes" (
    "nonce" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "owner_id" TEXT NOT NULL,
    "session_id" TEXT NOT NULL,
    "tunnel_address" TEXT NOT NULL,
    "echo_address" TEXT,
    "reported_address" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "echoed_at" TIMESTAMPTZ(3),
    "answered_at" TIMESTAMPTZ(3),

    CONSTRAINT "egress_probes_pkey" PRIMARY KEY ("nonce")
);

-- CreateIndex
CREATE INDEX "egress_probes_echo_address_echoed_at_idx" ON "egress_probes"("echo_address", "echoed_at");

-- CreateIndex
CREATE INDEX "egress_probes_agent_id_created_at_idx" ON "egress_probes"("agent_id", "created_at");
