-- Reserve and settle as one statement each (one round trip, one short transaction), so the wallet row lock —
-- what serialises requests on one wallet — is held for as little time as possible. Same semantics as the
-- multi-statement versions they replace (gateway/src/billing/ledger.ts documents them).

-- Holds p_amount of p_user's balance for p_request. Returns 'reserved', 'duplicate' (already reserved;
-- nothing changes) or 'insufficient_balance' (nothing changes).
CREATE OR REPLACE FUNCTION wellspring_reserve(
  p_request text, p_user text, p_amount bigint, p_price_ver integer, p_plan text, p_api text, p_model text,
  p_agent text, p_owner text, p_tier "AgentTier", p_tier_bps integer
) RETURNS text AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM reservations WHERE request_id = p_request) THEN
    RETURN 'duplicate';
  END IF;
  UPDATE wallets SET available_micros = available_micros - p_amount, reserved_micros = reserved_micros + p_amount, updated_at = now()
    WHERE user_id = p_user AND available_micros >= p_amount;
  IF NOT FOUND THEN
    RETURN 'insufficient_balance';
  END IF;
  INSERT INTO reservations (request_id, user_id, amount_micros, price_ver, plan_id, api, model, agent_id, owner_id, tier, tier_bps)
    VALUES (p_request, p_user, p_amount, p_price_ver, p_plan, p_api, p_model, p_agent, p_owner, p_tier, p_tier_bps)
    ON CONFLICT (request_id) DO NOTHING;
  IF NOT FOUND THEN
    -- A concurrent reserve of the same request won: give this hold back.
    UPDATE wallets SET available_micros = available_micros + p_amount, reserved_micros = reserved_micros - p_amount, updated_at = now()
      WHERE user_id = p_user;
    RETURN 'duplicate';
  END IF;
  RETURN 'reserved';
END;
$$ LANGUAGE plpgsql;

-- Settles p_request once: charges min(p_charge, reserved), pays the owner min(p_earning, charge), releases
-- the rest, posts the balanced journal entries and records the charge on the reservation. Returns
-- (outcome, charged, released) with outcome 'settled', 'already_settled' or 'unknown_request'.
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
  UPDATE wallets SET reserved_micros = reserved_micros - r.amount_micros, available_micros = available_micros + (r.amount_micros - v_charge), updated_at = now()
    WHERE user_id = r.user_id;
  UPDATE reservations SET status = 'settled', charge_micros = v_charge, earning_micros = v_earning, owner_id = COALESCE(p_owner, owner_id),
      input_tokens = p_input, output_tokens = p_output, cached_input_tokens = p_cached, estimated = p_estimated, end_cause = p_end_cause, settled_at = now()
    WHERE request_id = p_request;
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
