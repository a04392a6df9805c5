-- CreateTable
CREATE TABLE "canary_results" (
    "id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "model" TEXT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "ok" BOOLEAN NOT NULL,
    "ttfb_ms" INTEGER,
    "duration_ms" INTEGER NOT NULL,
    "error" TEXT,
    "answered_model" TEXT,
    "prompt_tokens" INTEGER,
    "completion_tokens" INTEGER,
    "expected_prompt_tokens" INTEGER NOT NULL,
    "problems" TEXT[],

    CONSTRAINT "canary_results_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "canary_results_agent_id_at_idx" ON "canary_results"("agent_id", "at");

-- CreateIndex
CREATE INDEX "canary_results_at_idx" ON "canary_results"("at");
