-- AlterTable
ALTER TABLE "reservations" ADD COLUMN     "lease_id" TEXT;

-- CreateTable
CREATE TABLE "credit_leases" (
    "id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "gateway_id" TEXT NOT NULL,
    "amount_micros" BIGINT NOT NULL,
    "granted_micros" BIGINT NOT NULL DEFAULT 0,
    "charged_micros" BIGINT NOT NULL DEFAULT 0,
    "released" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "renewed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "released_at" TIMESTAMPTZ(3),

    CONSTRAINT "credit_leases_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "credit_leases_user_id_released_idx" ON "credit_leases"("user_id", "released");

-- CreateIndex
CREATE INDEX "credit_leases_released_renewed_at_idx" ON "credit_leases"("released", "renewed_at");

ALTER TABLE "credit_leases" ADD CONSTRAINT "credit_leases_amount_nonnegative" CHECK ("amount_micros" >= 0);

-- Leases (docs/billing.md): a gateway holds a slice of a wallet and reserves for its requests in memory.
-- Every function locks the wallet row first, then the lease row, so they never deadlock with each other.

-- Grants p_lease (or tops it up) with at most p_want and at least p_min, taking no more than half the
-- available balance unless p_min needs more: one gateway's lease never starves another gateway.
-- Returns what was granted; 0 when the balance does not cover p_min (nothing changes).
CREATE OR REPLACE FUNCTION wellspring_lease(p_lease text, p_user text, p_gateway text, p_want bigint, p_min bigint) RETURNS bigint AS $$
DECLARE
  v_available bigint;
  v_grant bigint;
BEGIN
  SELECT available_micros INTO v_available FROM wallets WHERE user_id = p_user FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  v_grant := LEAST(p_want, GREATEST(p_min, v_available / 2));
  IF v_grant <= 0 OR v_grant < p_min OR v_grant > v_available THEN
    RETURN 0;
  END IF;
  INSERT INTO credit_leases (id, user_id, gateway_id, amount_micros, granted_micros) VALUES (p_lease, p_user, p_gateway, v_grant, v_grant)
    ON CONFLICT (id) DO UPDATE SET amount_micros = credit_leases.amount_micros + EXCLUDED.amount_micros,
      granted_micros = credit_leases.granted_micros + EXCLUDED.granted_micros, renewed_at = now()
    WHERE credit_leases.released = false AND credit_leases.user_id = EXCLUDED.user_id;
  IF NOT FOUND THEN
    RETURN 0; -- a released lease is never topped up
  END IF;
  UPDATE wallets SET available_micros = available_micros - v_grant, reserved_micros = reserved_micros + v_grant, updated_at = now()
    WHERE user_id = p_user;
  RETURN v_grant;
END;
$$ LANGUAGE plpgsql;

-- Gives back what p_lease still holds and closes it. Returns the amount returned (0 if already released).
CREATE OR REPLACE FUNCTION wellspring_release_lease(p_lease text) RETURNS bigint AS $$
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
  IF l.released THEN
    RETURN 0;
  END IF;
  UPDATE wallets SET available_micros = available_micros + l.amount_micros, reserved_micros = reserved_micros - l.amount_micros, updated_at = now()
    WHERE user_id = l.user_id;
  UPDATE credit_leases SET released = true, released_at = now(), amount_micros = 0 WHERE id = p_lease;
  RETURN l.amount_micros;
END;
$$ LANGUAGE plpgsql;

-- Settles one request held against a lease, once: writes its reservation record (already settled, with
-- what it was priced and paid with), charges min(p_charge, p_reserved, what the lease holds) from the lease,
-- pays the owner at most the charge, keeps the wallet's spent total and the daily rollup, posts the
-- balanced journal. If the lease was released meanwhile (swept after its gateway went silent), the charge
-- comes from the available balance, never more than it. Returns (outcome, charged, released) like
-- wellspring_settle: 'settled', 'already_settled' or 'unknown_request'.
CREATE OR REPLACE FUNCTION wellspring_settle_leased(
  p_request text, p_lease text, p_user text, p_reserved bigint, p_charge bigint, p_owner text, p_earning bigint,
  p_input integer, p_output integer, p_cached integer, p_estimated boolean, p_end_cause "EndCause",
  p_price_ver integer, p_plan text, p_api text, p_model text, p_agent text, p_tier "AgentTier", p_tier_bps integer
) RETURNS TABLE (outcome text, charged bigint, released bigint) AS $$
DECLARE
  v_available bigint;
  v_held bigint;
  v_released boolean;
  v_charge bigint;
  v_earning bigint;
BEGIN
  SELECT available_micros INTO v_available FROM wallets WHERE user_id = p_user FOR UPDATE;
  SELECT l.amount_micros, l.released INTO v_held, v_released FROM credit_leases l WHERE l.id = p_lease AND l.user_id = p_user FOR UPDATE;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'unknown_request'::text, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  v_charge := GREATEST(0, LEAST(p_charge, p_reserved, CASE WHEN v_released THEN COALESCE(v_available, 0) ELSE v_held END));
  v_earning := CASE WHEN p_owner IS NULL THEN 0 ELSE LEAST(p_earning, v_charge) END;
  INSERT INTO reservations (request_id, user_id, amount_micros, status, charge_micros, earning_micros, price_ver, plan_id, api, model,
      agent_id, owner_id, tier, tier_bps, input_tokens, output_tokens, cached_input_tokens, estimated, end_cause, settled_at, lease_id)
    VALUES (p_request, p_user, p_reserved, 'settled', v_charge, v_earning, p_price_ver, p_plan, p_api, p_model,
      p_agent, p_owner, p_tier, p_tier_bps, p_input, p_output, p_cached, p_estimated, p_end_cause, now(), p_lease)
    ON CONFLICT (request_id) DO NOTHING;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'already_settled'::text, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  IF v_released THEN
    UPDATE wallets SET available_micros = available_micros - v_charge, spent_micros = spent_micros + v_charge, updated_at = now()
      WHERE user_id = p_user;
  ELSE
    UPDATE credit_leases SET amount_micros = amount_micros - v_charge, charged_micros = charged_micros + v_charge WHERE id = p_lease;
    UPDATE wallets SET reserved_micros = reserved_micros - v_charge, spent_micros = spent_micros + v_charge, updated_at = now()
      WHERE user_id = p_user;
  END IF;
  INSERT INTO usage_daily (user_id, day, model, spent_micros, requests)
    VALUES (p_user, (now() AT TIME ZONE 'UTC')::date, COALESCE(p_model, 'unknown'), v_charge, 1)
    ON CONFLICT (user_id, day, model) DO UPDATE SET spent_micros = usage_daily.spent_micros + EXCLUDED.spent_micros, requests = usage_daily.requests + 1;
  IF v_charge > 0 THEN
    INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
      VALUES ('settle:' || p_request, p_request, 'user:' || p_user, -v_charge, 'usage');
    IF v_earning > 0 THEN
      INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
        VALUES ('settle:' || p_request, p_request, 'owner:' || p_owner, v_earning, 'earning');
    END IF;
    IF v_charge - v_earning > 0 THEN
      INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
        VALUES ('settle:' || p_request, p_request, 'platform:margin', v_charge - v_earning, 'margin');
    END IF;
  END IF;
  RETURN QUERY SELECT 'settled'::text, v_charge, p_reserved - v_charge;
END;
$$ LANGUAGE plpgsql;
