-- AlterTable
ALTER TABLE "wallets" ADD COLUMN     "spent_micros" BIGINT NOT NULL DEFAULT 0;

-- CreateTable
CREATE TABLE "usage_daily" (
    "user_id" TEXT NOT NULL,
    "day" DATE NOT NULL,
    "model" TEXT NOT NULL,
    "spent_micros" BIGINT NOT NULL DEFAULT 0,
    "requests" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "usage_daily_pkey" PRIMARY KEY ("user_id","day","model")
);

-- Backfill from what was settled before this migration.
UPDATE "wallets" w SET "spent_micros" = COALESCE((SELECT -SUM(j."amount_micros") FROM "journal_entries" j WHERE j."account" = 'user:' || w."user_id" AND j."kind" = 'usage'), 0);
INSERT INTO "usage_daily" ("user_id", "day", "model", "spent_micros", "requests")
  SELECT "user_id", ("settled_at" AT TIME ZONE 'UTC')::date, COALESCE("model", 'unknown'), SUM(COALESCE("charge_micros", 0)), COUNT(*)
  FROM "reservations" WHERE "status" = 'settled' GROUP BY 1, 2, 3;
ALTER TABLE "wallets" ADD CONSTRAINT "wallets_spent_nonnegative" CHECK ("spent_micros" >= 0);

-- Settlement keeps both: the wallet's running total and the day's row (same statement, same transaction).
CREATE OR REPLACE FUNCTION wellspring_settle(
  p_request text, p_charge bigint, p_owner text, p_earning bigint, p_input integer, p_output integer,
  p_cached integer, p_estimated boolean, p_end_cause "EndCause"
) RETURNS TABLE (outcome text, charged bigint, released bigint) AS $$
DECLARE
  r reservations%ROWTYPE;
  v_charge bigint;
  v_earning bigint;
BEGIN
  SELECT * INTO r FROM reservations WHERE request_id = p_request FOR UPDATE;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'unknown_request'::text, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  IF r.status <> 'held' THEN
    RETURN QUERY SELECT 'already_settled'::text, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  v_charge := LEAST(p_charge, r.amount_micros);
  v_earning := CASE WHEN p_owner IS NULL THEN 0 ELSE LEAST(p_earning, v_charge) END;
  UPDATE wallets SET reserved_micros = reserved_micros - r.amount_micros, available_micros = available_micros + (r.amount_micros - v_charge),
      spent_micros = spent_micros + v_charge, updated_at = now()
    WHERE user_id = r.user_id;
  UPDATE reservations SET status = 'settled', charge_micros = v_charge, earning_micros = v_earning, owner_id = COALESCE(p_owner, owner_id),
      input_tokens = p_input, output_tokens = p_output, cached_input_tokens = p_cached, estimated = p_estimated, end_cause = p_end_cause, settled_at = now()
    WHERE request_id = p_request;
  INSERT INTO usage_daily (user_id, day, model, spent_micros, requests)
    VALUES (r.user_id, (now() AT TIME ZONE 'UTC')::date, COALESCE(r.model, 'unknown'), v_charge, 1)
    ON CONFLICT (user_id, day, model) DO UPDATE SET spent_micros = usage_daily.spent_micros + EXCLUDED.spent_micros, requests = usage_daily.requests + 1;
  IF v_charge > 0 THEN
    INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
      VALUES ('settle:' || p_request, p_request, 'user:' || r.user_id, -v_charge, 'usage');
    IF v_earning > 0 THEN
      INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
        VALUES ('settle:' || p_request, p_request, 'owner:' || p_owner, v_earning, 'earning');
    END IF;
    IF v_charge - v_earning > 0 THEN
      INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
        VALUES ('settle:' || p_request, p_request, 'platform:margin', v_charge - v_earning, 'margin');
    END IF;
  END IF;
  RETURN QUERY SELECT 'settled'::text, v_charge, r.amount_micros - v_charge;
END;
$$ LANGUAGE plpgsql;
