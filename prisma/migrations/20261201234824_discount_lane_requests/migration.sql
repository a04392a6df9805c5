-- AlterTable
ALTER TABLE "agents" ADD COLUMN     "discount_lane_requested_at" TIMESTAMPTZ(3);
