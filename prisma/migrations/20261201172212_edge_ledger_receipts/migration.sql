-- AlterTable
ALTER TABLE "agents" ADD COLUMN     "ledger_reported_at" TIMESTAMPTZ(3),
ADD COLUMN     "ledger_tail_hash" TEXT,
ADD COLUMN     "ledger_tail_seq" INTEGER;

-- CreateTable
CREATE TABLE "agent_receipts" (
    "agent_id" TEXT NOT NULL,
    "seq" INTEGER NOT NULL,
    "request_id" TEXT NOT NULL,
    "body" BYTEA NOT NULL,
    "hash" BYTEA NOT NULL,
    "signature" BYTEA NOT NULL,
    "countersignature" BYTEA NOT NULL,
    "charge_micros" BIGINT NOT NULL,
    "earning_micros" BIGINT NOT NULL,
    "agent_earning_micros" BIGINT NOT NULL,
    "ended_at" TIMESTAMPTZ(3) NOT NULL,
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "agent_receipts_pkey" PRIMARY KEY ("agent_id","seq")
);

-- CreateIndex
CREATE UNIQUE INDEX "agent_receipts_request_id_key" ON "agent_receipts"("request_id");

-- CreateIndex
CREATE INDEX "agent_receipts_agent_id_ended_at_idx" ON "agent_receipts"("agent_id", "ended_at");

-- Receipts are append-only: a receipt the hub countersigned is never changed or removed by the hub.
CREATE OR REPLACE FUNCTION wellspring_refuse_receipt_change() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'agent receipts are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER agent_receipts_append_only BEFORE UPDATE OR DELETE ON "agent_receipts"
  FOR EACH ROW EXECUTE FUNCTION wellspring_refuse_receipt_change();
