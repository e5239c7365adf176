//! The SQL of the abuse limits: sliding-window counters shared by every API replica, and
//! paused number prefixes. Which limits apply, and their messages, is the API's policy.

use std::time::Duration;

use sqlx::{PgPool, Row};

/// One limit to take from: at most `limit` events under `key` within `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub key: String,
    pub limit: u32,
    pub window: Duration,
}

/// Takes one event under every limit, or none if any is full: `Ok(None)` when taken, else
/// the index (into `limits`) of the first full one and how long until it has room.
pub async fn take(pool: &PgPool, limits: &[Limit]) -> sqlx::Result<Option<(usize, Duration)>> {
    if limits.is_empty() {
        return Ok(None);
    }
    let keys: Vec<&str> = limits.iter().map(|l| l.key.as_str()).collect();
    let counts: Vec<i32> = limits.iter().map(|l| l.limit as i32).collect();
    let windows: Vec<f64> = limits.iter().map(|l| l.window.as_secs_f64()).collect();
    let row = sqlx::query("SELECT refused, retry_after FROM rate_take($1, $2, $3)")
        .bind(&keys)
        .bind(&counts)
        .bind(&windows)
        .fetch_one(pool)
        .await?;
    let refused: i32 = row.try_get(0)?;
    let retry_after: f64 = row.try_get(1)?;
    Ok((refused > 0).then(|| (refused as usize - 1, Duration::from_secs_f64(retry_after.max(1.0)))))
}

/// Gives back the newest event under `key` (a check that turned out not to be a wrong code).
pub async fn give_back(pool: &PgPool, key: &str) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM rate_events WHERE ctid = \
           (SELECT ctid FROM rate_events WHERE key = $1 ORDER BY at DESC LIMIT 1)",
    )
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}

/// How long `prefix` stays paused, if it is.
pub async fn prefix_paused(pool: &PgPool, prefix: &str) -> sqlx::Result<Option<Duration>> {
    let left: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM until - now())::float8 FROM prefix_pauses WHERE prefix = $1 AND until > now()",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await?;
    Ok(left.map(|s| Duration::from_secs_f64(s.max(1.0))))
}

/// Pauses `prefix` for `pause` (extends a pause under way). Returns whether it was not
/// paused before (so the alert is raised once per pause).
pub async fn pause_prefix(pool: &PgPool, prefix: &str, pause: Duration) -> sqlx::Result<bool> {
    let fresh: bool = sqlx::query_scalar(
        "INSERT INTO prefix_pauses (prefix, until) VALUES ($1, now() + make_interval(secs => $2)) \
         ON CONFLICT (prefix) DO UPDATE SET until = EXCLUDED.until, \
           paused_at = CASE WHEN prefix_pauses.until > now() THEN prefix_pauses.paused_at ELSE now() END \
         RETURNING paused_at = now()",
    )
    .bind(prefix)
    .bind(pause.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok(fresh)
}

/// Deletes events older than `keep` (the longest window in use), a batch at a time.
pub async fn forget_older_than(pool: &PgPool, keep: Duration) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM rate_events WHERE ctid IN (SELECT ctid FROM rate_events \
           WHERE at < now() - make_interval(secs => $1) LIMIT 10000)",
    )
    .bind(keep.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
