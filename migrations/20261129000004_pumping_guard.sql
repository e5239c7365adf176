-- The conversion-aware SMS-pumping guard and the daily SMS budget per country. All of it is
-- shared by every API replica, and bounded: activity rows live for the guard's window,
-- baselines one per prefix seen in the last 30 days, budgets one per country and day for
-- two days, pauses one per prefix for a day after they end.

-- Starts and approvals per number prefix in 10-second buckets. Each API replica adds its
-- own counts every second (one statement for all its prefixes); an approval is credited to
-- the bucket of its verification's start, so a bucket's conversion reads as approved over
-- started once its users have had time to check. Buckets older than the guard's window are
-- folded into the prefix's baseline and deleted.
CREATE TABLE prefix_activity (
    prefix   text        NOT NULL,
    bucket   timestamptz NOT NULL,
    country  text        NOT NULL,
    started  integer     NOT NULL DEFAULT 0,
    approved integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (prefix, bucket)
);
CREATE INDEX prefix_activity_by_bucket ON prefix_activity (bucket);

-- Each prefix's usual rate of starts: an exponentially weighted average of starts per minute
-- over the buckets folded so far (time constant PUMPING_BASELINE_HOURS), up to `through`.
CREATE TABLE prefix_baselines (
    prefix     text             PRIMARY KEY,
    per_minute double precision NOT NULL,
    through    timestamptz      NOT NULL
);

-- A pause is now raised by the guard as well as by the hard ceiling. `enforced` is false for a
-- suspicion in monitor mode (alerted and counted, nothing refused); `strikes` counts the
-- pauses of the prefix that followed each other within a day (each doubles the pause).
ALTER TABLE prefix_pauses
    ADD COLUMN enforced boolean NOT NULL DEFAULT true,
    ADD COLUMN strikes  integer NOT NULL DEFAULT 1,
    ADD COLUMN reason   text    NOT NULL DEFAULT 'ceiling';

-- SMS accepted per country per UTC day, against DAILY_SMS_BUDGET.
CREATE TABLE sms_budgets (
    country text    NOT NULL,
    day     date    NOT NULL,
    used    integer NOT NULL,
    PRIMARY KEY (country, day)
);

-- Admits a start: takes one event under every rate-limit key (as `rate_take`, all or none)
-- and, when `budget` is not null, one SMS of `budget_country`'s budget for today (UTC), only if the
-- limits had room; a refused start uses up nothing. The budget row is locked before the
-- limits' keys, by every caller in the same order, so concurrent starts cannot deadlock, and
-- two replicas can never both take the last SMS of a budget.
-- Returns (0, 0) when admitted, (i, seconds) when the i-th limit is full, and (-1, seconds
-- until the next UTC day) when the budget is used up.
--
-- The transaction commits without waiting for its WAL flush: these are counters, and the
-- hot row of a busy country is then locked for microseconds instead of a disk flush. A
-- PostgreSQL crash can forget the last fraction of a second of counts (a budget can be
-- exceeded by the starts of that instant); the starts themselves are committed durably.
CREATE FUNCTION start_take(keys text[], limits integer[], window_seconds double precision[],
                           budget_country text, budget integer)
RETURNS TABLE (refused integer, retry_after double precision)
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    used_ integer;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF budget IS NOT NULL THEN
        INSERT INTO sms_budgets AS b (country, day, used) VALUES (budget_country, today, 0)
        ON CONFLICT (country, day) DO UPDATE SET used = b.used
        RETURNING b.used INTO used_;
        IF used_ >= budget THEN
            refused := -1;
            retry_after := GREATEST(1, ceil(extract(epoch FROM
                ((today + 1)::timestamp AT TIME ZONE 'UTC') - clock_timestamp())));
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    SELECT r.refused, r.retry_after INTO refused, retry_after
      FROM rate_take(keys, limits, window_seconds) r;
    IF refused = 0 AND budget IS NOT NULL THEN
        UPDATE sms_budgets SET used = used + 1 WHERE country = budget_country AND day = today;
    END IF;
    RETURN NEXT;
END
$$;
