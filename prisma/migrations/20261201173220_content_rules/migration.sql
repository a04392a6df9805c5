-- CreateTable
CREATE TABLE "content_rules" (
    "id" TEXT NOT NULL,
    "list" TEXT NOT NULL,
    "term" TEXT NOT NULL,
    "active" BOOLEAN NOT NULL DEFAULT true,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created_by" TEXT NOT NULL,
    "removed_at" TIMESTAMPTZ(3),

    CONSTRAINT "content_rules_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "content_refusals" (
    "id" TEXT NOT NULL,
    "request_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "key_id" TEXT NOT NULL,
    "rule_id" TEXT NOT NULL,
    "request_hash" TEXT NOT NULL,
    "api" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "content_refusals_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "content_rules_active_idx" ON "content_rules"("active");

-- CreateIndex
CREATE INDEX "content_refusals_user_id_created_at_idx" ON "content_refusals"("user_id", "created_at");
