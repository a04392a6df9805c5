-- AlterTable
ALTER TABLE "credit_leases" ADD COLUMN     "requests_claimed" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "reservations" ADD COLUMN     "audio_seconds" INTEGER,
ADD COLUMN     "characters" INTEGER,
ADD COLUMN     "images" INTEGER,
ADD COLUMN     "lease_micros" BIGINT,
ADD COLUMN     "official_micros" BIGINT,
ADD COLUMN     "overdraft_micros" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "plan_bps" INTEGER;

-- CreateTable
CREATE TABLE "gateways" (
    "id" TEXT NOT NULL,
    "hub_id" TEXT NOT NULL,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_seen_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "stopped_at" TIMESTAMPTZ(3),

    CONSTRAINT "gateways_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "gateways_last_seen_at_idx" ON "gateways"("last_seen_at");

-- Usage beyond a request's reservation is charged in full (docs/billing.md, "Usage beyond the reservation"):
-- a charge may exceed the amount reserved, the part beyond it comes from the available balance (which may go
-- below zero; the user is then refused until topped up), and the owner earns the official cost × the tier
-- whatever the user's plan charges (the platform margin may be negative on a plan priced below the share).
ALTER TABLE "wallets" DROP CONSTRAINT "wallets_available_nonnegative";
ALTER TABLE "reservations" DROP CONSTRAINT "reservations_charge_within_amount";
ALTER TABLE "reservations" DROP CONSTRAINT "reservations_earning_within_charge";
ALTER TABLE "reservations" ADD CONSTRAINT "reservations_charge_nonnegative" CHECK ("charge_micros" IS NULL OR "charge_micros" >= 0);
ALTER TABLE "reservations" ADD CONSTRAINT "reservations_earning_nonnegative" CHECK ("earning_micros" IS NULL OR "earning_micros" >= 0);
ALTER TABLE "reservations" ADD CONSTRAINT "reservations_overdraft_nonnegative" CHECK ("overdraft_micros" >= 0);
ALTER TABLE "credit_leases" ADD CONSTRAINT "credit_leases_claimed_nonnegative" CHECK ("requests_claimed" >= 0);

-- The gateway holds every request against a credit lease; the per-request reserve and settle have no caller.
DROP FUNCTION IF EXISTS wellspring_reserve(text, text, bigint, integer, text, text, text, text, text, "AgentTier", integer);
DROP FUNCTION IF EXISTS wellspring_settle(text, bigint, text, bigint, integer, integer, integer, boolean, "EndCause");
DROP FUNCTION IF EXISTS wellspring_settle_leased(text, text, text, bigint, bigint, text, bigint, integer, integer, integer, boolean, "EndCause", integer, text, text, text, text, "AgentTier", integer);

-- Raises a risk flag for an admin, or — when one of the same kind and subject is open — updates it (latest
-- evidence, highest severity, raise count and time): the same rule as gateway/src/risk/flags.ts, atomic by the
-- unique `open_key`, for detectors that run inside the database's own statements.
CREATE OR REPLACE FUNCTION wellspring_raise_flag(p_kind text, p_subject text, p_severity integer, p_evidence jsonb) RETURNS text AS $$
DECLARE
  v_id text := 'flg_' || substr(md5(random()::text || clock_timestamp()::text), 1, 20);
BEGIN
  INSERT INTO risk_flags (id, kind, subject, severity, evidence, open_key, raised_count, created_at, last_raised_at)
    VALUES (v_id, p_kind, p_subject, p_severity, p_evidence, p_kind || ':' || p_subject, 1, now(), now())
    ON CONFLICT (open_key) DO UPDATE SET evidence = EXCLUDED.evidence, severity = GREATEST(risk_flags.severity, EXCLUDED.severity),
      raised_count = risk_flags.raised_count + 1, last_raised_at = now()
    RETURNING id INTO v_id;
  RETURN v_id;
END;
$$ LANGUAGE plpgsql;

-- Settles one request held against a lease, once: writes its reservation record (already settled, with what it
-- was priced with and paid with), charges p_charge in full — the part within its reservation from the lease, the
-- rest from the available balance — credits the owner p_earning, keeps the wallet's spent total and the daily
-- rollup, and posts the balanced journal. If the lease was released meanwhile (its gateway was found dead, or
-- it was given back), the whole charge comes from the available balance. Usage beyond the reservation raises a
-- `usage_over_reservation` flag; a charge that takes the balance below zero is recorded as the request's
-- overdraft (the audit accepts a negative balance only up to its requests' overdrafts) and raises
-- `balance_overdrawn`.
-- Returns (outcome, charged, released): 'settled', 'already_settled' (nothing changes) or 'unknown_request'.
CREATE OR REPLACE FUNCTION wellspring_settle_leased(
  p_request text, p_lease text, p_user text, p_reserved bigint, p_charge bigint, p_owner text, p_earning bigint,
  p_input integer, p_output integer, p_cached integer, p_estimated boolean, p_end_cause "EndCause",
  p_price_ver integer, p_plan text, p_api text, p_model text, p_agent text, p_tier "AgentTier", p_tier_bps integer,
  p_official bigint, p_plan_bps integer, p_audio integer, p_images integer, p_chars integer
) RETURNS TABLE (outcome text, charged bigint, released bigint) AS $$
DECLARE
  v_available bigint;
  v_held bigint;
  v_released boolean;
  v_charge bigint := GREATEST(p_charge, 0);
  v_earning bigint := CASE WHEN p_owner IS NULL THEN 0 ELSE GREATEST(p_earning, 0) END;
  v_beyond bigint;
  v_from_lease bigint;
  v_overdraft bigint;
BEGIN
  SELECT available_micros INTO v_available FROM wallets WHERE user_id = p_user FOR UPDATE;
  SELECT l.amount_micros, l.released INTO v_held, v_released FROM credit_leases l WHERE l.id = p_lease AND l.user_id = p_user FOR UPDATE;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'unknown_request'::text, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  v_beyond := GREATEST(0, v_charge - p_reserved);
  v_from_lease := CASE WHEN v_released THEN 0 ELSE LEAST(v_charge - v_beyond, v_held) END;
  v_overdraft := GREATEST(0, (v_charge - v_from_lease) - GREATEST(COALESCE(v_available, 0), 0));
  INSERT INTO reservations (request_id, user_id, amount_micros, status, charge_micros, earning_micros, price_ver, plan_id, api, model,
      agent_id, owner_id, tier, tier_bps, input_tokens, output_tokens, cached_input_tokens, estimated, end_cause, settled_at, lease_id,
      official_micros, plan_bps, lease_micros, overdraft_micros, audio_seconds, images, characters)
    VALUES (p_request, p_user, p_reserved, 'settled', v_charge, v_earning, p_price_ver, p_plan, p_api, p_model,
      p_agent, p_owner, p_tier, p_tier_bps, p_input, p_output, p_cached, p_estimated, p_end_cause, now(), p_lease,
      p_official, p_plan_bps, v_from_lease, v_overdraft, p_audio, p_images, p_chars)
    ON CONFLICT (request_id) DO NOTHING;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'already_settled'::text, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  IF v_from_lease > 0 THEN
    UPDATE credit_leases SET amount_micros = amount_micros - v_from_lease, charged_micros = charged_micros + v_from_lease WHERE id = p_lease;
  END IF;
  UPDATE wallets SET reserved_micros = reserved_micros - v_from_lease, available_micros = available_micros - (v_charge - v_from_lease),
      spent_micros = spent_micros + v_charge, updated_at = now()
    WHERE user_id = p_user;
  INSERT INTO usage_daily (user_id, day, model, spent_micros, requests)
    VALUES (p_user, (now() AT TIME ZONE 'UTC')::date, COALESCE(p_model, 'unknown'), v_charge, 1)
    ON CONFLICT (user_id, day, model) DO UPDATE SET spent_micros = usage_daily.spent_micros + EXCLUDED.spent_micros, requests = usage_daily.requests + 1;
  IF v_charge > 0 THEN
    INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
      VALUES ('settle:' || p_request, p_request, 'user:' || p_user, -v_charge, 'usage');
  END IF;
  IF v_earning > 0 THEN
    INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
      VALUES ('settle:' || p_request, p_request, 'owner:' || p_owner, v_earning, 'earning');
  END IF;
  IF v_charge - v_earning <> 0 THEN
    INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
      VALUES ('settle:' || p_request, p_request, 'platform:margin', v_charge - v_earning, 'margin');
  END IF;
  IF v_beyond > 0 THEN
    PERFORM wellspring_raise_flag('usage_over_reservation', 'user:' || p_user, 2, jsonb_build_object(
      'requestId', p_request, 'agentId', p_agent, 'model', p_model, 'reservedMicros', p_reserved::text, 'chargedMicros', v_charge::text,
      'beyondMicros', v_beyond::text, 'inputTokens', p_input, 'outputTokens', p_output, 'estimated', p_estimated, 'at', now()));
  END IF;
  IF v_overdraft > 0 THEN
    PERFORM wellspring_raise_flag('balance_overdrawn', 'user:' || p_user, 2, jsonb_build_object(
      'requestId', p_request, 'overdraftMicros', v_overdraft::text, 'availableMicros', (COALESCE(v_available, 0) - (v_charge - v_from_lease))::text, 'at', now()));
  END IF;
  RETURN QUERY SELECT 'settled'::text, v_charge, GREATEST(0, p_reserved - v_charge);
END;
$$ LANGUAGE plpgsql;

-- Gives back what p_lease still holds and closes it, recording how many requests its gateway claimed against it
-- (the audit checks each of them settled). Returns the amount returned (0 if already released).
DROP FUNCTION IF EXISTS wellspring_release_lease(text);
CREATE OR REPLACE FUNCTION wellspring_release_lease(p_lease text, p_claimed integer) RETURNS bigint AS $$
DECLARE
  v_user text;
  l credit_leases%ROWTYPE;
BEGIN
  SELECT user_id INTO v_user FROM credit_leases WHERE id = p_lease;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  PERFORM 1 FROM wallets WHERE user_id = v_user FOR UPDATE;
  SELECT * INTO l FROM credit_leases WHERE id = p_lease FOR UPDATE;
  IF p_claimed IS NOT NULL AND p_claimed > l.requests_claimed THEN
    UPDATE credit_leases SET requests_claimed = p_claimed WHERE id = p_lease;
  END IF;
  IF l.released THEN
    RETURN 0;
  END IF;
  UPDATE wallets SET available_micros = available_micros + l.amount_micros, reserved_micros = reserved_micros - l.amount_micros, updated_at = now()
    WHERE user_id = l.user_id;
  UPDATE credit_leases SET released = true, released_at = now(), amount_micros = 0 WHERE id = p_lease;
  RETURN l.amount_micros;
END;
$$ LANGUAGE plpgsql;
