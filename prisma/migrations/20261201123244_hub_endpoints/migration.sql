-- CreateTable
CREATE TABLE "hub_endpoints" (
    "hub_id" TEXT NOT NULL,
    "agent_url" TEXT NOT NULL,
    "tunnel_pin" TEXT NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "hub_endpoints_pkey" PRIMARY KEY ("hub_id")
);
