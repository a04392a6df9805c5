-- CreateEnum
CREATE TYPE "DeferredState" AS ENUM ('pending', 'settled');

-- CreateTable
CREATE TABLE "deferred_settlements" (
    "request_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "owner_id" TEXT,
    "model" TEXT NOT NULL,
    "response_id" TEXT NOT NULL,
    "held_micros" BIGINT NOT NULL,
    "pricing" JSONB NOT NULL,
    "worst_input_tokens" INTEGER NOT NULL,
    "worst_output_tokens" INTEGER NOT NULL,
    "record" JSONB NOT NULL,
    "state" "DeferredState" NOT NULL DEFAULT 'pending',
    "next_poll_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "last_status" TEXT,
    "settled_by" TEXT,
    "charge_micros" BIGINT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "settled_at" TIMESTAMPTZ(3),

    CONSTRAINT "deferred_settlements_pkey" PRIMARY KEY ("request_id")
);

-- CreateIndex
CREATE UNIQUE INDEX "deferred_settlements_response_id_key" ON "deferred_settlements"("response_id");

-- CreateIndex
CREATE INDEX "deferred_settlements_state_next_poll_at_idx" ON "deferred_settlements"("state", "next_poll_at");

-- A background response's hold moves out of its gateway's credit lease into a `held` reservation of its own
-- (docs/billing.md, "Background responses"): the lease is charged the hold (as if the request had settled for
-- it), so the lease's own books stay whole and the gateway may give it back; the wallet's reserved total does not
-- change (the held reservation counts in it instead). When the lease was released meanwhile (its gateway was
-- found dead), the hold is taken from the available balance, as far as it goes. Once per request; returns the
-- amount held (0 when the request already has a reservation row).
CREATE OR REPLACE FUNCTION wellspring_defer_hold(
  p_request text, p_lease text, p_user text, p_amount bigint,
  p_price_ver integer, p_plan text, p_api text, p_model text, p_agent text, p_owner text, p_tier "AgentTier", p_tier_bps integer
) RETURNS bigint AS $$
DECLARE
  v_available bigint;
  v_lease_amount bigint;
  v_released boolean;
  v_from_lease bigint := 0;
  v_held bigint;
BEGIN
  SELECT available_micros INTO v_available FROM wallets WHERE user_id = p_user FOR UPDATE;
  PERFORM 1 FROM reservations WHERE request_id = p_request;
  IF FOUND THEN
    RETURN 0;
  END IF;
  SELECT l.amount_micros, l.released INTO v_lease_amount, v_released FROM credit_leases l WHERE l.id = p_lease AND l.user_id = p_user FOR UPDATE;
  IF FOUND AND NOT v_released THEN
    v_from_lease := LEAST(GREATEST(p_amount, 0), v_lease_amount);
  END IF;
  -- What the lease cannot give comes from the available balance, as far as it goes.
  v_held := v_from_lease + LEAST(GREATEST(p_amount, 0) - v_from_lease, GREATEST(COALESCE(v_available, 0), 0));
  IF v_from_lease > 0 THEN
    UPDATE credit_leases SET amount_micros = amount_micros - v_from_lease, charged_micros = charged_micros + v_from_lease WHERE id = p_lease;
  END IF;
  UPDATE wallets SET available_micros = available_micros - (v_held - v_from_lease), reserved_micros = reserved_micros + (v_held - v_from_lease), updated_at = now()
    WHERE user_id = p_user;
  INSERT INTO reservations (request_id, user_id, amount_micros, status, price_ver, plan_id, api, model, agent_id, owner_id, tier, tier_bps,
      lease_id, lease_micros)
    VALUES (p_request, p_user, v_held, 'held', p_price_ver, p_plan, p_api, p_model, p_agent, p_owner, p_tier, p_tier_bps,
      p_lease, v_from_lease);
  RETURN v_held;
END;
$$ LANGUAGE plpgsql;

-- Settles a background response's held reservation once, by the rules of wellspring_settle_leased: the charge in
-- full (within the hold from it, the rest from the available balance, an overdraft recorded and flagged), the
-- owner credited, the daily rollup, the balanced journal; the rest of the hold goes back to the available
-- balance. Returns (outcome, charged, released): 'settled', 'already_settled' or 'unknown_request'.
CREATE OR REPLACE FUNCTION wellspring_settle_deferred(
  p_request text, p_charge bigint, p_earning bigint,
  p_input integer, p_output integer, p_cached integer, p_estimated boolean, p_end_cause "EndCause", p_official bigint, p_plan_bps integer
) RETURNS TABLE (outcome text, charged bigint, released bigint) AS $$
DECLARE
  r reservations%ROWTYPE;
  v_available bigint;
  v_charge bigint := GREATEST(p_charge, 0);
  v_earning bigint;
  v_overdraft bigint;
BEGIN
  SELECT * INTO r FROM reservations WHERE request_id = p_request;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'unknown_request'::text, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  SELECT available_micros INTO v_available FROM wallets WHERE user_id = r.user_id FOR UPDATE;
  SELECT * INTO r FROM reservations WHERE request_id = p_request FOR UPDATE;
  IF r.status <> 'held' THEN
    RETURN QUERY SELECT 'already_settled'::text, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  v_earning := CASE WHEN r.owner_id IS NULL THEN 0 ELSE GREATEST(p_earning, 0) END;
  -- The hold comes back to the available balance whole; the charge leaves it.
  v_overdraft := GREATEST(0, v_charge - (GREATEST(COALESCE(v_available, 0), 0) + r.amount_micros));
  UPDATE reservations SET status = 'settled', charge_micros = v_charge, earning_micros = v_earning, input_tokens = p_input, output_tokens = p_output,
      cached_input_tokens = p_cached, estimated = p_estimated, end_cause = p_end_cause, settled_at = now(), official_micros = p_official,
      plan_bps = p_plan_bps, overdraft_micros = v_overdraft
    WHERE request_id = p_request;
  UPDATE wallets SET reserved_micros = reserved_micros - r.amount_micros, available_micros = available_micros + r.amount_micros - v_charge,
      spent_micros = spent_micros + v_charge, updated_at = now()
    WHERE user_id = r.user_id;
  INSERT INTO usage_daily (user_id, day, model, spent_micros, requests)
    VALUES (r.user_id, (now() AT TIME ZONE 'UTC')::date, COALESCE(r.model, 'unknown'), v_charge, 1)
    ON CONFLICT (user_id, day, model) DO UPDATE SET spent_micros = usage_daily.spent_micros + EXCLUDED.spent_micros, requests = usage_daily.requests + 1;
  IF v_charge > 0 THEN
    INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
      VALUES ('settle:' || p_request, p_request, 'user:' || r.user_id, -v_charge, 'usage');
  END IF;
  IF v_earning > 0 THEN
    INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
      VALUES ('settle:' || p_request, p_request, 'owner:' || r.owner_id, v_earning, 'earning');
  END IF;
  IF v_charge - v_earning <> 0 THEN
    INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
      VALUES ('settle:' || p_request, p_request, 'platform:margin', v_charge - v_earning, 'margin');
  END IF;
  IF v_charge > r.amount_micros THEN
    PERFORM wellspring_raise_flag('usage_over_reservation', 'user:' || r.user_id, 2, jsonb_build_object(
      'requestId', p_request, 'agentId', r.agent_id, 'model', r.model, 'reservedMicros', r.amount_micros::text, 'chargedMicros', v_charge::text,
      'beyondMicros', (v_charge - r.amount_micros)::text, 'inputTokens', p_input, 'outputTokens', p_output, 'estimated', p_estimated, 'at', now()));
  END IF;
  IF v_overdraft > 0 THEN
    PERFORM wellspring_raise_flag('balance_overdrawn', 'user:' || r.user_id, 2, jsonb_build_object(
      'requestId', p_request, 'overdraftMicros', v_overdraft::text, 'at', now()));
  END IF;
  RETURN QUERY SELECT 'settled'::text, v_charge, GREATEST(0, r.amount_micros - v_charge);
END;
$$ LANGUAGE plpgsql;
