-- AlterEnum
ALTER TYPE "KeyStatus" ADD VALUE 'suspended';

-- AlterTable
ALTER TABLE "earning_holds" ADD COLUMN     "held_by" TEXT;
