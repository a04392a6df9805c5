-- AlterTable
ALTER TABLE "virtual_keys" ADD COLUMN     "allowed_owner_ids" TEXT[] DEFAULT ARRAY[]::TEXT[],
ADD COLUMN     "min_agent_tier" "AgentTier";
