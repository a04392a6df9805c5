-- AlterTable
ALTER TABLE "request_records" ADD COLUMN     "cached_input_tokens" INTEGER,
ADD COLUMN     "input_tokens" INTEGER,
ADD COLUMN     "output_tokens" INTEGER;
