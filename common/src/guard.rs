//! The SQL of the SMS-pumping guard: per-prefix activity in short buckets, each prefix's
//! baseline, and the pauses. The policy (what is suspicious) is the API's.

use std::time::Duration;

use sqlx::{PgPool, Row};

/// Width of an activity bucket, in seconds.
pub const BUCKET_SECONDS: i64 = 10;

/// A pause lasts at most this long however often the prefix was paused before (unless
/// `PREFIX_PAUSE_SECONDS` itself is longer).
pub const LONGEST_PAUSE: Duration = Duration::from_secs(12 * 3600);

/// Counts of one prefix in one bucket, to be added to what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub prefix: String,
    /// Unix time of the bucket's start, a multiple of [`BUCKET_SECONDS`].
    pub bucket: i64,
    pub country: String,
    pub started: i32,
    pub approved: i32,
}

/// Adds `rows` (one per prefix and bucket) to the stored counts, in one statement. Rows are
/// taken in key order, so two replicas adding overlapping rows cannot deadlock.
pub async fn add_activity(pool: &PgPool, rows: &[Activity]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<&Activity> = rows.iter().collect();
    rows.sort_by(|a, b| (&a.prefix, a.bucket).cmp(&(&b.prefix, b.bucket)));
    let prefixes: Vec<&str> = rows.iter().map(|r| r.prefix.as_str()).collect();
    let buckets: Vec<f64> = rows.iter().map(|r| r.bucket as f64).collect();
    let countries: Vec<&str> = rows.iter().map(|r| r.country.as_str()).collect();
    let started: Vec<i32> = rows.iter().map(|r| r.started).collect();
    let approved: Vec<i32> = rows.iter().map(|r| r.approved).collect();
    sqlx::query(
        "INSERT INTO prefix_activity AS a (prefix, bucket, country, started, approved) \
         SELECT p, to_timestamp(b), c, s, n \
           FROM unnest($1::text[], $2::float8[], $3::text[], $4::int4[], $5::int4[]) WITH ORDINALITY AS t(p, b, c, s, n, i) \
          ORDER BY i \
         ON CONFLICT (prefix, bucket) DO UPDATE SET started = a.started + EXCLUDED.started, \
                                                    approved = a.approved + EXCLUDED.approved",
    )
    .bind(&prefixes)
    .bind(&buckets)
    .bind(&countries)
    .bind(&started)
    .bind(&approved)
    .execute(pool)
    .await?;
    Ok(())
}

/// What the guard knows of one prefix over its window.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixStats {
    pub prefix: String,
    pub country: String,
    /// Starts within the window.
    pub recent: i64,
    /// Of those, the starts old enough to have been checked.
    pub matured: i64,
    /// Approvals of the matured starts.
    pub approved: i64,
    /// The prefix's usual starts per minute (0 for a prefix without history).
    pub baseline_per_minute: f64,
}

/// Every prefix with starts since `since` (unix seconds); starts in buckets that ended by
/// `matured_by` count as matured.
pub async fn prefix_stats(pool: &PgPool, since: f64, matured_by: f64) -> sqlx::Result<Vec<PrefixStats>> {
    let rows = sqlx::query(
        "SELECT a.prefix, max(a.country) AS country, sum(a.started)::int8 AS recent, \
                coalesce(sum(a.started) FILTER (WHERE a.bucket + make_interval(secs => $3) <= to_timestamp($2)), 0)::int8 AS matured, \
                coalesce(sum(a.approved) FILTER (WHERE a.bucket + make_interval(secs => $3) <= to_timestamp($2)), 0)::int8 AS approved, \
                coalesce(max(b.per_minute), 0) AS baseline \
           FROM prefix_activity a LEFT JOIN prefix_baselines b ON b.prefix = a.prefix \
          WHERE a.bucket >= to_timestamp($1) \
          GROUP BY a.prefix",
    )
    .bind(since)
    .bind(matured_by)
    .bind(BUCKET_SECONDS as f64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PrefixStats {
                prefix: r.try_get("prefix")?,
                country: r.try_get("country")?,
                recent: r.try_get("recent")?,
                matured: r.try_get("matured")?,
                approved: r.try_get("approved")?,
                baseline_per_minute: r.try_get("baseline")?,
            })
        })
        .collect()
}

/// A pause just raised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paused {
    /// How many pauses of the prefix followed each other within a day, this one included.
    pub strikes: i32,
    pub lasts: Duration,
}

/// Pauses `prefix` for `base`, doubled for every pause of it that ended less than a day
/// before (at most [`LONGEST_PAUSE`], or `base` if longer). `None` when it is paused already
/// (a pause under way is never extended; an unenforced one, from monitor mode, is replaced
/// by an enforced one). `reason` says what paused it: `guard` or `ceiling`.
pub async fn pause(
    pool: &PgPool,
    prefix: &str,
    base: Duration,
    enforced: bool,
    reason: &str,
) -> sqlx::Result<Option<Paused>> {
    let row = sqlx::query(
        "INSERT INTO prefix_pauses AS p (prefix, until, paused_at, enforced, strikes, reason) \
         VALUES ($1, now() + make_interval(secs => $2), now(), $4, 1, $5) \
         ON CONFLICT (prefix) DO UPDATE SET \
           strikes = CASE WHEN p.until > now() - interval '1 day' THEN p.strikes + 1 ELSE 1 END, \
           until = now() + make_interval(secs => GREATEST($2, LEAST($3, $2 * 2 ^ \
                     (CASE WHEN p.until > now() - interval '1 day' THEN p.strikes ELSE 0 END)))), \
           paused_at = now(), enforced = EXCLUDED.enforced, reason = EXCLUDED.reason \
         WHERE p.until <= now() OR (EXCLUDED.enforced AND NOT p.enforced) \
         RETURNING strikes, extract(epoch FROM until - now())::float8 AS lasts",
    )
    .bind(prefix)
    .bind(base.as_secs_f64())
    .bind(LONGEST_PAUSE.as_secs_f64())
    .bind(enforced)
    .bind(reason)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Paused {
            strikes: r.try_get("strikes")?,
            lasts: Duration::from_secs_f64(r.try_get::<f64, _>("lasts")?.max(0.0)),
        })
    })
    .transpose()
}

/// The prefixes paused and enforced now, with how long each stays paused.
pub async fn enforced_pauses(pool: &PgPool) -> sqlx::Result<Vec<(String, Duration)>> {
    let rows: Vec<(String, f64)> = sqlx::query_as(
        "SELECT prefix, extract(epoch FROM until - now())::float8 FROM prefix_pauses WHERE until > now() AND enforced",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(p, s)| (p, Duration::from_secs_f64(s.max(0.0))))
        .collect())
}

/// Folds the buckets that started before `before` (unix seconds) into their prefixes'
/// baselines (an exponentially weighted average of starts per minute with time constant
/// `time_constant`) and deletes them. Runs in one replica at a time (the others find the
/// lock taken and return `false` at once), so no bucket is folded twice. A bucket written
/// again after it was folded (a late approval) is deleted without moving the baseline.
pub async fn fold_into_baselines(pool: &PgPool, before: f64, time_constant: Duration) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(7042)")
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(false);
    }
    sqlx::query(
        "WITH aged AS (DELETE FROM prefix_activity WHERE bucket < to_timestamp($1) RETURNING prefix, bucket, started), \
         per AS (SELECT prefix, sum(started)::float8 AS n, min(bucket) AS first, \
                        max(bucket) + make_interval(secs => $3) AS through \
                   FROM aged GROUP BY prefix), \
         span AS (SELECT per.prefix, per.n, per.through, coalesce(b.per_minute, 0) AS old, \
                         GREATEST($3 / 60.0, extract(epoch FROM per.through - coalesce(b.through, per.first)) / 60.0) AS minutes \
                    FROM per LEFT JOIN prefix_baselines b ON b.prefix = per.prefix \
                   WHERE b.through IS NULL OR per.through > b.through) \
         INSERT INTO prefix_baselines AS b (prefix, per_minute, through) \
         SELECT prefix, old * exp(-minutes / $2) + (1 - exp(-minutes / $2)) * n / minutes, through \
           FROM span ORDER BY prefix \
         ON CONFLICT (prefix) DO UPDATE SET per_minute = EXCLUDED.per_minute, \
                                            through = GREATEST(b.through, EXCLUDED.through)",
    )
    .bind(before)
    .bind(time_constant.as_secs_f64() / 60.0)
    .bind(BUCKET_SECONDS as f64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Each country's SMS accepted today (UTC) under `DAILY_SMS_BUDGET`.
pub async fn budget_used_today(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT country, used::int8 FROM sms_budgets WHERE day = (now() AT TIME ZONE 'UTC')::date ORDER BY country",
    )
    .fetch_all(pool)
    .await
}

/// Deletes what the guard and the budget no longer need: baselines of prefixes quiet for 30
/// days, pauses that ended more than a day ago (kept that long to double a repeated pause),
/// budgets of days before yesterday. Returns the rows deleted.
pub async fn forget_old(pool: &PgPool) -> sqlx::Result<u64> {
    let mut total = 0;
    for statement in [
        "DELETE FROM prefix_baselines WHERE through < now() - interval '30 days'",
        "DELETE FROM prefix_pauses WHERE until < now() - interval '1 day'",
        "DELETE FROM sms_budgets WHERE day < (now() AT TIME ZONE 'UTC')::date - 1",
    ] {
        total += sqlx::query(statement).execute(pool).await?.rows_affected();
    }
    Ok(total)
}
