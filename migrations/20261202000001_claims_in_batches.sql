-- A worker's concurrent claims in one call: one round trip and one commit for a batch of
-- sends instead of one for each.
--
-- Each send is claimed by the same statement as a single claim (`claim` in
-- `common/src/repo/sends.rs`, where its rules are explained), run once per send inside the
-- function. PL/pgSQL keeps that statement's plan for the session, and an equality on the
-- primary key plans the same on any table, so a batch is never planned as a whole (a single
-- statement over an array of ids was: its plan, made on statistics that had not seen the
-- table grow, read every earlier attempt of every verification).
--
-- The sends are claimed in the order of their ids, so two batches that hold the same
-- verification (a duplicate job on two workers) lock their rows in one order and cannot
-- deadlock. Only claimed sends come back, numbered by their place in `p_ids` (from 1); a
-- caller looks the others up to tell a busy send from one with nothing to send.
CREATE FUNCTION claim_sends(
    p_ids uuid[],
    p_holders text[],
    p_lease_seconds double precision,
    p_worker text,
    p_min_lifetime double precision,
    p_unknown text[],
    p_submitted text,
    p_in_flight text
) RETURNS TABLE (
    n integer,
    phone_number text,
    locale text,
    channel text,
    step_started_at timestamptz,
    expires_at timestamptz,
    send_attempts integer,
    needs_lookup boolean,
    submitted_sid text,
    attempt_row bigint
)
LANGUAGE plpgsql
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    i integer;
BEGIN
    FOR i IN SELECT u.o::integer FROM unnest(p_ids) WITH ORDINALITY AS u(id, o) ORDER BY u.id, u.o LOOP
        RETURN QUERY
        WITH current AS MATERIALIZED (SELECT v.step FROM verifications v WHERE v.id = p_ids[i]),
        earlier AS MATERIALIZED (
            SELECT EXISTS (SELECT 1 FROM send_attempts a WHERE a.verification_id = p_ids[i]
                             AND a.step = (SELECT c.step FROM current c) AND a.outcome = ANY (p_unknown)) AS lookup,
                   (SELECT a.provider_message_sid FROM send_attempts a WHERE a.verification_id = p_ids[i]
                      AND a.step = (SELECT c.step FROM current c) AND a.outcome = p_submitted
                      AND a.provider_message_sid IS NOT NULL LIMIT 1) AS sid),
        claimed AS (
            UPDATE verifications v SET delivery_status = 'sending', waiting_in = NULL,
              claimed_until = now() + make_interval(secs => p_lease_seconds), claimed_by = p_holders[i],
              updated_at = now(),
              send_attempts = v.send_attempts + CASE WHEN NOT e.lookup AND e.sid IS NULL
                AND v.expires_at > now() + make_interval(secs => p_min_lifetime) THEN 1 ELSE 0 END
            FROM earlier e
            WHERE v.id = p_ids[i] AND v.status = 'pending' AND v.expires_at > now()
              AND v.delivery_status IN ('queued', 'sending')
              AND (v.claimed_until IS NULL OR v.claimed_until < now() OR v.claimed_by = p_holders[i])
              AND v.step = (SELECT c.step FROM current c)
            RETURNING v.step AS claimed_step, v.phone_number AS c_phone, v.locale AS c_locale,
              coalesce(v.channels[v.step + 1], 'sms') AS c_channel,
              coalesce(v.step_started_at, v.created_at) AS c_started, v.expires_at AS c_expires,
              v.send_attempts AS c_attempts, e.lookup AS c_lookup, e.sid AS c_sid,
              NOT e.lookup AND e.sid IS NULL
                AND v.expires_at > now() + make_interval(secs => p_min_lifetime) AS begins),
        first AS (
            INSERT INTO send_attempts (verification_id, step, attempt, started_at, outcome, worker_id)
            SELECT p_ids[i], claimed_step, c_attempts, now(), p_in_flight, p_worker FROM claimed WHERE begins
            RETURNING id)
        SELECT i, c_phone, c_locale, c_channel, c_started, c_expires, c_attempts, c_lookup, c_sid,
               (SELECT f.id FROM first f)
        FROM claimed;
    END LOOP;
END
$$;
