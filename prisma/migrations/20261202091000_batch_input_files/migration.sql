-- A batch input file's summary, read while its upload streamed through the hub (gateway/src/billing/batch_input.ts).
ALTER TABLE "file_routes" ADD COLUMN "batch_model" TEXT,
ADD COLUMN "batch_endpoint" TEXT,
ADD COLUMN "batch_lines" INTEGER,
ADD COLUMN "batch_input_tokens_max" BIGINT,
ADD COLUMN "batch_output_tokens_max" BIGINT,
ADD COLUMN "batch_problem" TEXT;
