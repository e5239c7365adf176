//! The SQL of the abuse limits: sliding-window counters shared by every API replica, and
//! paused number prefixes, the daily SMS budget. Which limits apply, and their messages, is the API's policy.
//!
//! The limits of concurrent requests are taken together ([`take_many`]); each key's window
//! is decided in the process ([`window`]) while PostgreSQL holds the key's lock.

mod batch;
pub mod window;

pub use batch::{Ask, take_many};

use std::time::Duration;

use sqlx::PgPool;

/// One limit to take from: at most `limit` events under `key` within `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub key: String,
    pub limit: u32,
    pub window: Duration,
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

/// Why a request was not admitted by [`take_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The limit at this index (into the limits given) is full, and has room again after this.
    Limit(usize, Duration),
    /// The country's daily SMS budget is used up, until the next UTC day (this long).
    Budget(Duration),
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
