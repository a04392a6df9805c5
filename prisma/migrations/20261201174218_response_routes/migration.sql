-- CreateTable
CREATE TABLE "response_routes" (
    "response_id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "response_routes_pkey" PRIMARY KEY ("response_id")
);
