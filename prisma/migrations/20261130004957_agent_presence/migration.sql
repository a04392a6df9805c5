-- AlterTable
ALTER TABLE "agents" ADD COLUMN     "connected_session" TEXT;
