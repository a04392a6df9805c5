-- CreateTable
CREATE TABLE "file_routes" (
    "file_id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "model" TEXT NOT NULL,
    "purpose" TEXT NOT NULL,
    "bytes" BIGINT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "file_routes_pkey" PRIMARY KEY ("file_id")
);

-- CreateIndex
CREATE INDEX "file_routes_user_id_created_at_idx" ON "file_routes"("user_id", "created_at");
