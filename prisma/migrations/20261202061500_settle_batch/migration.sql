-- Settles a batch of requests held against leases in one set-based statement (gateway/src/billing/ledger.ts
-- `settleMany`; docs/ARCHITECTURE.md, "One write per request"): the same rules as wellspring_settle_leased, row for
-- row and in the order given, but each table is written once per batch instead of once per request — the
-- reservation rows, the journal entries and the request records in one multi-row insert each, one update per
-- wallet, per lease and per daily rollup. Every wallet of the batch is locked first, then every lease (in key
-- order, the order wellspring_lease and wellspring_release_lease take them: wallet before lease). A request settles
-- once: one already settled (or repeated earlier in the batch) is 'already_settled' and changes nothing; one whose
-- lease is not the user's is 'unknown_request'. What each request takes from its lease is the greedy fill in the
-- batch's order (running sums: the first takes what it reserved while the lease holds it), and its overdraft is
-- judged against the balance the requests before it left, exactly as one call per request would.
-- p_records: the request records of the batch (a JSON array of `request_records` rows, column names as keys),
-- written with it whatever each settlement's outcome (keyed by id: a replay never duplicates one).
-- Records that cannot be written (a foreign key gone, no partition for the day) never stop the settlements: they are
-- dropped and counted (records_dropped, with the last error, on every row), as the separate record writer did.
-- Returns per input row (ord = its position, from 1): outcome, charged, released, and the reservation row as JSON
-- (row_to_json; null for 'unknown_request') — what the hub seals into the agent's receipt, so it is never read back.
CREATE OR REPLACE FUNCTION wellspring_settle_batch(
  p_request text[], p_lease text[], p_user text[], p_reserved bigint[], p_charge bigint[], p_owner text[], p_earning bigint[],
  p_input integer[], p_output integer[], p_cached integer[], p_estimated boolean[], p_end_cause "EndCause"[],
  p_price_ver integer[], p_plan text[], p_api text[], p_model text[], p_agent text[], p_tier "AgentTier"[], p_tier_bps integer[],
  p_official bigint[], p_plan_bps integer[], p_audio integer[], p_images integer[], p_chars integer[], p_records json
) RETURNS TABLE (ord bigint, outcome text, charged bigint, released bigint, reservation text, records_dropped integer, records_error text) AS $$
#variable_conflict use_column
DECLARE
  v record;
  v_dropped integer := 0;
  v_error text := NULL;
  v_row json;
BEGIN
  -- The records first, in one insert; one that cannot be written (a key or user gone, no partition for its day) must
  -- not stop the money: then each is tried alone and those that fail are dropped and counted (the caller logs them).
  BEGIN
    INSERT INTO request_records SELECT * FROM json_populate_recordset(NULL::request_records, COALESCE(p_records, '[]'::json))
      ON CONFLICT (id, started_at) DO NOTHING;
  EXCEPTION WHEN others THEN
    FOR v_row IN SELECT * FROM json_array_elements(p_records) LOOP
      BEGIN
        INSERT INTO request_records SELECT * FROM json_populate_record(NULL::request_records, v_row) ON CONFLICT (id, started_at) DO NOTHING;
      EXCEPTION WHEN others THEN
        v_dropped := v_dropped + 1;
        v_error := SQLERRM;
      END;
    END LOOP;
  END;
  PERFORM 1 FROM wallets w WHERE w.user_id = ANY(p_user) ORDER BY w.user_id FOR UPDATE;
  PERFORM 1 FROM credit_leases l WHERE l.id = ANY(p_lease) ORDER BY l.id FOR UPDATE;
  FOR v IN
    WITH x AS (
      SELECT * FROM unnest(p_request, p_lease, p_user, p_reserved, p_charge, p_owner, p_earning, p_input, p_output, p_cached, p_estimated,
          p_end_cause, p_price_ver, p_plan, p_api, p_model, p_agent, p_tier, p_tier_bps, p_official, p_plan_bps, p_audio, p_images, p_chars)
        WITH ORDINALITY AS x(request_id, lease_id, user_id, reserved, charge, owner_id, earning, input_tokens, output_tokens, cached_tokens,
          estimated, end_cause, price_ver, plan_id, api, model, agent_id, tier, tier_bps, official, plan_bps, audio, images, chars, ord)
    ),
    k AS (
      SELECT x.*, l.id IS NOT NULL AS known, COALESCE(l.released, false) AS lease_released, COALESCE(l.amount_micros, 0) AS lease_held,
        w.available_micros AS wallet_available, GREATEST(x.charge, 0) AS c,
        CASE WHEN x.owner_id IS NULL THEN 0 ELSE GREATEST(x.earning, 0) END AS e
      FROM x LEFT JOIN credit_leases l ON l.id = x.lease_id AND l.user_id = x.user_id LEFT JOIN wallets w ON w.user_id = x.user_id
    ),
    n AS (
      SELECT k.*, k.c - GREATEST(0, k.c - k.reserved) AS want FROM (
        SELECT k.*, row_number() OVER (PARTITION BY k.request_id ORDER BY k.ord) AS nth FROM k WHERE k.known
      ) k
      WHERE k.nth = 1 AND NOT EXISTS (SELECT 1 FROM reservations s WHERE s.request_id = k.request_id)
    ),
    f AS (
      SELECT n.*, GREATEST(0, n.c - n.reserved) AS beyond,
        (CASE WHEN n.lease_released THEN 0
          ELSE LEAST(n.lease_held, SUM(n.want) OVER lw) - LEAST(n.lease_held, SUM(n.want) OVER lw - n.want) END)::bigint AS from_lease
      FROM n WINDOW lw AS (PARTITION BY n.lease_id ORDER BY n.ord ROWS UNBOUNDED PRECEDING)
    ),
    g AS (
      SELECT f.*, (COALESCE(f.wallet_available, 0) - (SUM(f.c - f.from_lease) OVER uw - (f.c - f.from_lease)))::bigint AS available_before
      FROM f WINDOW uw AS (PARTITION BY f.user_id ORDER BY f.ord ROWS UNBOUNDED PRECEDING)
    ),
    s AS (
      SELECT g.*, GREATEST(0, (g.c - g.from_lease) - GREATEST(g.available_before, 0)) AS overdraft FROM g
    ),
    ins AS (
      INSERT INTO reservations AS r (request_id, user_id, amount_micros, status, charge_micros, earning_micros, price_ver, plan_id, api, model,
          agent_id, owner_id, tier, tier_bps, input_tokens, output_tokens, cached_input_tokens, estimated, end_cause, settled_at, lease_id,
          official_micros, plan_bps, lease_micros, overdraft_micros, audio_seconds, images, characters)
        SELECT s.request_id, s.user_id, s.reserved, 'settled', s.c, s.e, s.price_ver, s.plan_id, s.api, s.model,
          s.agent_id, s.owner_id, s.tier, s.tier_bps, s.input_tokens, s.output_tokens, s.cached_tokens, s.estimated, s.end_cause, now(), s.lease_id,
          s.official, s.plan_bps, s.from_lease, s.overdraft, s.audio, s.images, s.chars
        FROM s ORDER BY s.ord
        ON CONFLICT (request_id) DO NOTHING
        RETURNING r.request_id, row_to_json(r)::text AS j
    ),
    m AS (
      SELECT s.*, ins.j FROM s JOIN ins ON ins.request_id = s.request_id
    ),
    lease_taken AS (
      UPDATE credit_leases l SET amount_micros = l.amount_micros - t.taken, charged_micros = l.charged_micros + t.taken
        FROM (SELECT m.lease_id, SUM(m.from_lease)::bigint AS taken FROM m GROUP BY m.lease_id HAVING SUM(m.from_lease) > 0) t
        WHERE l.id = t.lease_id
    ),
    wallet_charged AS (
      UPDATE wallets w SET reserved_micros = w.reserved_micros - t.from_lease, available_micros = w.available_micros - (t.c - t.from_lease),
          spent_micros = w.spent_micros + t.c, updated_at = now()
        FROM (SELECT m.user_id, SUM(m.from_lease)::bigint AS from_lease, SUM(m.c)::bigint AS c FROM m GROUP BY m.user_id) t
        WHERE w.user_id = t.user_id
    ),
    daily AS (
      INSERT INTO usage_daily (user_id, day, model, spent_micros, requests)
        SELECT m.user_id, (now() AT TIME ZONE 'UTC')::date, COALESCE(m.model, 'unknown'), SUM(m.c)::bigint, COUNT(*)::int
        FROM m GROUP BY m.user_id, COALESCE(m.model, 'unknown') ORDER BY 1, 3
        ON CONFLICT (user_id, day, model) DO UPDATE SET spent_micros = usage_daily.spent_micros + EXCLUDED.spent_micros,
          requests = usage_daily.requests + EXCLUDED.requests
    ),
    journal AS (
      INSERT INTO journal_entries (tx_id, request_id, account, amount_micros, kind)
        SELECT 'settle:' || m.request_id, m.request_id, t.account, t.amount, t.kind
        FROM m CROSS JOIN LATERAL (VALUES (1, 'user:' || m.user_id, -m.c, 'usage'), (2, 'owner:' || m.owner_id, m.e, 'earning'),
          (3, 'platform:margin', m.c - m.e, 'margin')) AS t(n, account, amount, kind)
        WHERE (t.n = 1 AND m.c > 0) OR (t.n = 2 AND m.e > 0) OR (t.n = 3 AND m.c - m.e <> 0)
        ORDER BY m.ord, t.n
    )
    SELECT k.ord, k.known, k.request_id, k.user_id, k.agent_id, k.model, k.reserved, k.input_tokens, k.output_tokens, k.estimated,
      m.c, m.beyond, m.overdraft, m.available_before - (m.c - m.from_lease) AS available_after, m.j,
      CASE WHEN m.request_id IS NULL AND k.known
        THEN COALESCE((SELECT ins.j FROM ins WHERE ins.request_id = k.request_id),
          (SELECT row_to_json(r)::text FROM reservations r WHERE r.request_id = k.request_id AND r.status = 'settled')) END AS settled_before
    FROM k LEFT JOIN m ON m.ord = k.ord
    ORDER BY k.ord
  LOOP
    ord := v.ord;
    records_dropped := v_dropped;
    records_error := v_error;
    IF NOT v.known THEN
      outcome := 'unknown_request'; charged := 0; released := 0; reservation := NULL;
    ELSIF v.c IS NULL THEN
      outcome := 'already_settled'; charged := 0; released := 0; reservation := v.settled_before;
    ELSE
      outcome := 'settled'; charged := v.c; released := GREATEST(0, v.reserved - v.c); reservation := v.j;
      IF v.beyond > 0 THEN
        PERFORM wellspring_raise_flag('usage_over_reservation', 'user:' || v.user_id, 2, jsonb_build_object(
          'requestId', v.request_id, 'agentId', v.agent_id, 'model', v.model, 'reservedMicros', v.reserved::text, 'chargedMicros', v.c::text,
          'beyondMicros', v.beyond::text, 'inputTokens', v.input_tokens, 'outputTokens', v.output_tokens, 'estimated', v.estimated, 'at', now()));
      END IF;
      IF v.overdraft > 0 THEN
        PERFORM wellspring_raise_flag('balance_overdrawn', 'user:' || v.user_id, 2, jsonb_build_object(
          'requestId', v.request_id, 'overdraftMicros', v.overdraft::text, 'availableMicros', v.available_after::text, 'at', now()));
      END IF;
    END IF;
    RETURN NEXT;
  END LOOP;
END;
$$ LANGUAGE plpgsql;
