-- AlterTable
ALTER TABLE "model_prices" ADD COLUMN     "audio_second_micros" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "character_micros_per_m" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "image_micros" BIGINT NOT NULL DEFAULT 0;

-- Prices are never negative.
ALTER TABLE "model_prices" ADD CONSTRAINT "model_prices_nonnegative" CHECK ("input_micros_per_mtok" >= 0 AND "output_micros_per_mtok" >= 0 AND "cached_input_micros_per_mtok" >= 0 AND "audio_second_micros" >= 0 AND "image_micros" >= 0 AND "character_micros_per_m" >= 0);
