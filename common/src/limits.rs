//! The SQL of the abuse limits: sliding-window counters shared by every API replica, and
//! paused number prefixes, the daily SMS budget. Which limits apply, and their messages, is the API's policy.

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
    let row = bind_limits(
        sqlx::query("SELECT refused, retry_after FROM rate_take($1, $2, $3)"),
        limits,
    )
    .fetch_one(pool)
    .await?;
    let refused: i32 = row.try_get(0)?;
    let retry_after: f64 = row.try_get(1)?;
    Ok((refused > 0).then(|| (refused as usize - 1, Duration::from_secs_f64(retry_after.max(1.0)))))
}

/// Binds `limits` as the first three parameters of `rate_take` and `start_take`: their keys,
/// counts and windows (seconds).
fn bind_limits<'q>(
    statement: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    limits: &[Limit],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let keys: Vec<String> = limits.iter().map(|l| l.key.clone()).collect();
    let counts: Vec<i32> = limits.iter().map(|l| l.limit as i32).collect();
    let windows: Vec<f64> = limits.iter().map(|l| l.window.as_secs_f64()).collect();
    statement.bind(keys).bind(counts).bind(windows)
}

/// Gives back the newest event under `key` (a check that turned out not to be a wrong code).
pub async fn give_back(pool: &PgPool, key: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT rate_give_back($1)").bind(key).execute(pool).await?;
    Ok(())
}

/// How long `prefix` stays paused (an enforced pause), if it is.
pub async fn prefix_paused(pool: &PgPool, prefix: &str) -> sqlx::Result<Option<Duration>> {
    let left: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM until - now())::float8 FROM prefix_pauses \
         WHERE prefix = $1 AND until > now() AND enforced",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await?;
    Ok(left.map(|s| Duration::from_secs_f64(s.max(1.0))))
}

/// Why a start was not admitted by [`take_start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartRefusal {
    /// The limit at this index (into the limits given) is full, and has room again after this.
    Limit(usize, Duration),
    /// The country's daily SMS budget is used up, until the next UTC day (this long).
    Budget(Duration),
}

/// Takes one event under every limit and, with `budget` (a country and its daily budget),
/// one SMS of that country's budget for today: all of it or nothing (`start_take` in
/// PostgreSQL, atomic across replicas). `Ok(None)` when admitted.
pub async fn take_start(
    pool: &PgPool,
    limits: &[Limit],
    budget: Option<(&str, u32)>,
) -> sqlx::Result<Option<StartRefusal>> {
    let statement = sqlx::query("SELECT refused, retry_after FROM start_take($1, $2, $3, $4, $5)");
    let row = bind_limits(statement, limits)
        .bind(budget.map(|(country, _)| country))
        .bind(budget.map(|(_, n)| n.min(i32::MAX as u32) as i32))
        .fetch_one(pool)
        .await?;
    let refused: i32 = row.try_get(0)?;
    let retry_after = Duration::from_secs_f64(row.try_get::<f64, _>(1)?.max(1.0));
    Ok(match refused {
        0 => None,
        -1 => Some(StartRefusal::Budget(retry_after)),
        i => Some(StartRefusal::Limit(i as usize - 1, retry_after)),
    })
}

/// Rows deleted by one statement of [`forget_expired`].
const FORGET_BATCH: i64 = 5_000;

/// Deletes the bookkeeping of keys whose newest event left its window, in statements of [`FORGET_BATCH`] rows (short locks, short transactions)
/// until none is left. The table then holds the keys active within their windows: its size
/// follows the number of numbers, addresses and prefixes in use, not the events. Returns the
/// rows deleted, with what [`crate::guard::forget_old`] deleted.
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
    total += crate::guard::forget_old(pool).await?;
    Ok(total)
}
