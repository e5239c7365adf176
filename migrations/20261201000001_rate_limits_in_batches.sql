-- Rate limits taken in batches, and limits sized for a burst.
--
-- The API takes the limits of concurrent requests in one transaction: `rate_read` locks every
-- key of the batch (the same advisory locks, in the same order, as `rate_take`) and reads
-- them; the API decides each request in arrival order and writes the keys back in one
-- statement. A request still takes all of its limits or none.
--
-- A limit above 100 events per window (a prefix ceiling sized for a launch, say) no longer
-- keeps one time per event: its events are counted per second, `counts[i]` of them in the
-- second starting at `times[i]`, so a key of 30,000 a minute holds at most 61 entries. Such a
-- second counts until its end has left the window: a bucketed limit is never exceeded, and
-- frees up at most one second late. `counts` is NULL when every entry is one event.
ALTER TABLE rate_limits ADD COLUMN counts integer[];

-- Locks `keys` and the budget rows of `countries` (today's, UTC) for the rest of the
-- transaction, then reads them (after the locks, with a snapshot of their own). The commit
-- of the transaction does not wait for its WAL flush, as in `start_take`. One row per key
-- found (`used` NULL), one per budget row found (`key` is `budget:` and the country,
-- `times` NULL), and a last row with `key` NULL: every row carries the clock the batch is
-- decided by.
CREATE FUNCTION rate_read(keys text[], countries text[])
RETURNS TABLE (key text, times timestamptz[], counts integer[], used integer, now timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- One statement takes the locks, in the order of the sorted names.
    PERFORM count(*) FROM (
        SELECT pg_advisory_xact_lock(hashtextextended(u, 7041))
        FROM (SELECT DISTINCT u FROM unnest(keys || ARRAY(SELECT 'budget:' || c FROM unnest(countries) c)) AS u
              ORDER BY 1) names) locked;
    now_ := clock_timestamp();
    RETURN QUERY
        SELECT r.key, r.times, r.counts, NULL::integer, now_ FROM rate_limits r WHERE r.key = ANY(keys)
        UNION ALL
        SELECT 'budget:' || b.country, NULL, NULL, b.used, now_ FROM sms_budgets b
         WHERE b.day = (now_ AT TIME ZONE 'UTC')::date AND b.country = ANY(countries)
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, now_;
END
$$;

-- Gives back the newest event under `k`, counted per second or not.
CREATE OR REPLACE FUNCTION rate_give_back(k text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 7041));
    UPDATE rate_limits SET
        times = CASE WHEN coalesce(counts[cardinality(counts)], 1) > 1 THEN times
                     ELSE times[1 : cardinality(times) - 1] END,
        counts = CASE WHEN counts IS NULL THEN NULL
                      WHEN counts[cardinality(counts)] > 1
                          THEN counts[1 : cardinality(counts) - 1] || (counts[cardinality(counts)] - 1)
                      ELSE counts[1 : cardinality(counts) - 1] END
    WHERE key = k;
END
$$;

-- `rate_take` and `start_take` stay for replicas of the previous version during a rolling
-- upgrade (they read a bucketed key as one event per second, so they let more through while
-- both versions run); nothing of this version calls them.
