-- Deferred settlements of several kinds (gateway/src/api/deferred.ts): a background response (every existing row),
-- an OpenAI batch, an Anthropic message batch. The polled object's id is unique per kind.
CREATE TYPE "DeferredKind" AS ENUM ('response', 'openai_batch', 'anthropic_batch');

ALTER TABLE "deferred_settlements" ADD COLUMN "kind" "DeferredKind" NOT NULL DEFAULT 'response';
ALTER TABLE "deferred_settlements" RENAME COLUMN "response_id" TO "object_id";
ALTER TABLE "deferred_settlements" ADD COLUMN "price_bps" INTEGER NOT NULL DEFAULT 10000;
ALTER TABLE "deferred_settlements" ADD COLUMN "snapshot" JSONB;
-- A batch's worst case sums up to 50,000 requests' bounds: beyond 2^31 tokens.
ALTER TABLE "deferred_settlements" ALTER COLUMN "worst_input_tokens" SET DATA TYPE BIGINT;
ALTER TABLE "deferred_settlements" ALTER COLUMN "worst_output_tokens" SET DATA TYPE BIGINT;

DROP INDEX "deferred_settlements_response_id_key";
CREATE UNIQUE INDEX "deferred_settlements_kind_object_id_key" ON "deferred_settlements"("kind", "object_id");
CREATE INDEX "deferred_settlements_user_id_kind_created_at_idx" ON "deferred_settlements"("user_id", "kind", "created_at");
