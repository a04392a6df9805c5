-- CreateTable
CREATE TABLE "message_batch_routes" (
    "batch_id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "model" TEXT NOT NULL,
    "request_id" TEXT NOT NULL,
    "object" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "message_batch_routes_pkey" PRIMARY KEY ("batch_id")
);

-- CreateIndex
CREATE INDEX "message_batch_routes_user_id_created_at_idx" ON "message_batch_routes"("user_id", "created_at");
