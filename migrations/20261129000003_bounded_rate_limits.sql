-- Rate-limit bookkeeping whose size follows the active keys, not the number of events.
--
-- A limit of N events per window needs only the times of the newest N events of its key: one
-- row per key holds them (oldest first), and a row whose newest event is older than its window
-- (`expires_at`) is deleted by the API's clean-up. Before, every event was a row, and the
-- clean-up (10,000 rows a minute) fell behind above about 40 starts a second.
CREATE TABLE rate_limits (
    key        text          PRIMARY KEY,
    -- The newest events under the key, oldest first; at most the key's limit of them.
    times      timestamptz[] NOT NULL,
    -- When the newest event leaves the key's window: from then on the row counts nothing.
    expires_at timestamptz   NOT NULL
);
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);

-- The counts under way survive the upgrade: each key keeps its newest 100 events for a day
-- (the longest window of the default limits); `rate_take` trims them to the key's limit and
-- window at its next event.
INSERT INTO rate_limits (key, times, expires_at)
SELECT key, array_agg(at ORDER BY at), max(at) + interval '1 day'
FROM (SELECT key, at, row_number() OVER (PARTITION BY key ORDER BY at DESC) AS newest
      FROM rate_events WHERE at > now() - interval '1 day') recent
WHERE newest <= 100
GROUP BY key;

DROP FUNCTION rate_take(text[], integer[], double precision[]);
DROP TABLE rate_events;

-- Takes one event under every key if each key has room under its limit within its window,
-- else none: all or nothing, so a refused request uses up nothing. Every key is locked (in a
-- fixed order, so concurrent callers cannot deadlock) for the rest of the transaction, which
-- makes read-then-write exact across replicas.
-- Returns (0, 0) when taken, else (the 1-based index of the first full limit, seconds until
-- it has room again).
CREATE FUNCTION rate_take(keys text[], limits integer[], window_seconds double precision[])
RETURNS TABLE (refused integer, retry_after double precision)
LANGUAGE plpgsql AS $$
DECLARE
    k text;
    i integer;
    n integer;
    now_ timestamptz := clock_timestamp();
    kept timestamptz[];
BEGIN
    FOR k IN SELECT DISTINCT u FROM unnest(keys) AS u ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(k, 7041));
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        SELECT coalesce(array_agg(t ORDER BY t), '{}') INTO kept
          FROM rate_limits r, unnest(r.times) AS t
         WHERE r.key = keys[i] AND t > now_ - make_interval(secs => window_seconds[i]);
        n := cardinality(kept);
        IF n >= limits[i] THEN
            -- Room comes when the (n - limit + 1)-th oldest event leaves the window.
            refused := i;
            retry_after := GREATEST(1, ceil(extract(epoch FROM
                kept[n - limits[i] + 1] + make_interval(secs => window_seconds[i]) - now_)));
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        INSERT INTO rate_limits AS r (key, times, expires_at)
        VALUES (keys[i], ARRAY[now_], now_ + make_interval(secs => window_seconds[i]))
        ON CONFLICT (key) DO UPDATE SET
            times = (SELECT array_agg(t ORDER BY t) FROM (
                       SELECT t FROM unnest(r.times || now_) AS t
                        WHERE t > now_ - make_interval(secs => window_seconds[i])
                        ORDER BY t DESC LIMIT limits[i]) newest),
            expires_at = now_ + make_interval(secs => window_seconds[i]);
    END LOOP;
    refused := 0;
    retry_after := 0;
    RETURN NEXT;
END
$$;

-- Gives back the newest event under `k` (a check that turned out not to be a wrong code),
-- under the same lock as `rate_take`.
CREATE FUNCTION rate_give_back(k text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 7041));
    UPDATE rate_limits SET times = times[1 : cardinality(times) - 1] WHERE key = k;
END
$$;
