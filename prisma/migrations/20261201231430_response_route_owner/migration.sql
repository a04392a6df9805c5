-- AlterTable
ALTER TABLE "response_routes" ADD COLUMN     "model" TEXT,
ADD COLUMN     "user_id" TEXT;

-- CreateIndex
CREATE INDEX "response_routes_created_at_idx" ON "response_routes"("created_at");
