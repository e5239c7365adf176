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
    sqlx::query("SELECT rate_give_back($1)").bind(key).execute(pool).await?;
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

/// Rows deleted by one statement of [`forget_expired`].
const FORGET_BATCH: i64 = 5_000;

/// Deletes the bookkeeping of keys whose newest event left its window, and prefix pauses
/// that ended, in statements of [`FORGET_BATCH`] rows (short locks, short transactions)
/// until none is left. The table then holds the keys active within their windows: its size
/// follows the number of numbers, addresses and prefixes in use, not the events. Returns the
/// rows deleted.
pub async fn forget_expired(pool: &PgPool) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let done = sqlx::query(
            // `expires_at` again in the outer condition: a key that an event renewed while
            // this statement waited for its row is checked anew and kept.
            "DELETE FROM rate_limits WHERE key = ANY(ARRAY( \
               SELECT key FROM rate_limits WHERE expires_at < now() LIMIT $1)) AND expires_at < now()",
        )
        .bind(FORGET_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        total += done;
        if done < FORGET_BATCH as u64 {
            break;
        }
    }
    total += sqlx::query("DELETE FROM prefix_pauses WHERE until < now()")
        .execute(pool)
        .await?
        .rows_affected();
    Ok(total)
}
