-- CreateEnum
CREATE TYPE "AgentRateMode" AS ENUM ('auto', 'expert');

-- AlterTable
ALTER TABLE "agents" ADD COLUMN     "concurrency_limit" INTEGER,
ADD COLUMN     "rate_mode" "AgentRateMode" NOT NULL DEFAULT 'auto',
ADD COLUMN     "rpm_limit" INTEGER,
ADD COLUMN     "tpm_limit" INTEGER;

-- AlterTable
ALTER TABLE "virtual_keys" ADD COLUMN     "concurrency_limit" INTEGER;
