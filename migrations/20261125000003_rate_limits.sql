-- Abuse limits shared by every API replica: sliding-window counters kept as events.

-- One row per counted event (a start, a check, a wrong code) under a key such as
-- 'start:number:+14155552671' or 'check:ip:203.0.113.7'. Old rows are deleted by the API.
CREATE TABLE rate_events (
    key text        NOT NULL,
    at  timestamptz NOT NULL
);
CREATE INDEX rate_events_by_key ON rate_events (key, at);
CREATE INDEX rate_events_by_age ON rate_events (at);

-- Number prefixes (country code + 3 digits) paused after a burst of starts: SMS pumping.
CREATE TABLE prefix_pauses (
    prefix     text        PRIMARY KEY,
    until      timestamptz NOT NULL,
    paused_at  timestamptz NOT NULL DEFAULT now()
);

-- Takes one event under every key if each key has room under its limit within its window,
-- else none: all or nothing, so a refused request uses up nothing. Every key is locked (in
-- a fixed order, so concurrent callers cannot deadlock) for the rest of the transaction,
-- which makes count-then-insert exact across replicas.
-- Returns (0, 0) when taken, else (the 1-based index of the first full limit, seconds until
-- it has room again).
CREATE FUNCTION rate_take(keys text[], limits integer[], window_seconds double precision[])
RETURNS TABLE (refused integer, retry_after double precision)
LANGUAGE plpgsql AS $$
DECLARE
    k text;
    i integer;
    n bigint;
    oldest timestamptz;
BEGIN
    FOR k IN SELECT DISTINCT u FROM unnest(keys) AS u ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(k, 7041));
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        SELECT count(*), min(e.at) INTO n, oldest
          FROM rate_events e
         WHERE e.key = keys[i] AND e.at > clock_timestamp() - make_interval(secs => window_seconds[i]);
        IF n >= limits[i] THEN
            refused := i;
            retry_after := GREATEST(1, ceil(extract(epoch FROM
                oldest + make_interval(secs => window_seconds[i]) - clock_timestamp())));
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO rate_events (key, at) SELECT u, clock_timestamp() FROM unnest(keys) AS u;
    refused := 0;
    retry_after := 0;
    RETURN NEXT;
END
$$;
