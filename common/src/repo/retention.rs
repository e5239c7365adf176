//! Data retention: verifications older than `RETENTION_DAYS` are deleted with their send
//! attempts and outbox rows (foreign keys `ON DELETE CASCADE`), and so are delivery events
//! received before then; idempotency keys go once they expire (24 hours). Phone numbers live in `verifications.phone_number`, and in the
//! bodies Twilio keeps (not here); codes are never stored, only their HMAC.
//!
//! Deletion goes in small batches from the oldest rows, found through the keys that grow with
//! time (`verifications.seq`, `delivery_events.id`), so no index on the dates is needed and a
//! round that finds nothing old reads one batch of index entries. Concurrent sweepers (every
//! API and worker process runs one) skip each other's rows.

use std::time::Duration;

use sqlx::PgPool;

/// Rows per statement: short transactions and short locks, so starts never wait long.
const BATCH: i64 = 500;
/// Pause between two batches of one sweep, leaving PostgreSQL to the traffic.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub verifications: u64,
    pub delivery_events: u64,
    pub idempotency_keys: u64,
}

/// Deletes everything older than `days`, a batch at a time, until nothing old is left.
pub async fn sweep_older_than(pool: &PgPool, days: u32) -> sqlx::Result<Swept> {
    let mut swept = Swept::default();
    loop {
        let verifications = delete_batch(pool, OLD_VERIFICATIONS, days).await?;
        let delivery_events = delete_batch(pool, OLD_DELIVERY_EVENTS, days).await?;
        let idempotency_keys = sqlx::query(EXPIRED_IDEMPOTENCY_KEYS)
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected();
        swept.verifications += verifications;
        swept.delivery_events += delivery_events;
        swept.idempotency_keys += idempotency_keys;
        if [verifications, delivery_events, idempotency_keys]
            .iter()
            .all(|n| *n < BATCH as u64)
        {
            return Ok(swept);
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
}

/// The oldest verifications (by `seq`) of one batch that are past retention. Their send
/// attempts and outbox rows go with them (`ON DELETE CASCADE`).
const OLD_VERIFICATIONS: &str = "WITH oldest AS (SELECT id, created_at AS at FROM verifications ORDER BY seq LIMIT $1), \
     doomed AS (SELECT v.id FROM verifications v \
                WHERE v.id = ANY(ARRAY(SELECT id FROM oldest WHERE at < now() - make_interval(days => $2))) \
                FOR UPDATE SKIP LOCKED) \
     DELETE FROM verifications WHERE id IN (SELECT id FROM doomed)";

/// The same for delivery events (by `id`).
const OLD_DELIVERY_EVENTS: &str = "WITH oldest AS (SELECT id, received_at AS at FROM delivery_events ORDER BY id LIMIT $1), \
     doomed AS (SELECT e.id FROM delivery_events e \
                WHERE e.id = ANY(ARRAY(SELECT id FROM oldest WHERE at < now() - make_interval(days => $2))) \
                FOR UPDATE SKIP LOCKED) \
     DELETE FROM delivery_events WHERE id IN (SELECT id FROM doomed)";

/// Expired idempotency keys, a batch at a time (found by the expiry's BRIN index: the pages
/// of the oldest keys).
const EXPIRED_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE (scope, idem_key) IN ( \
       SELECT scope, idem_key FROM idempotency_keys WHERE expires_at < now() \
       LIMIT $1 FOR UPDATE SKIP LOCKED)";

async fn delete_batch(pool: &PgPool, statement: &'static str, days: u32) -> sqlx::Result<u64> {
    let done = sqlx::query(statement)
        .bind(BATCH)
        .bind(days as i32)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
