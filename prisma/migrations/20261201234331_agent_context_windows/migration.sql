-- AlterTable
ALTER TABLE "agents" ADD COLUMN     "context_windows" JSONB NOT NULL DEFAULT '{}';
