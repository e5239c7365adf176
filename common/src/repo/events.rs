//! The `events` table (the outbox of event webhooks, written by triggers: see the migration
//! `…_events.sql`) and the expiry sweep that makes a code's expiry an event too.

use sqlx::{PgConnection, PgPool, Row};

/// An event to publish: Standard Webhooks' `webhook-id` and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub webhook_id: String,
    pub body: String,
}

/// Takes up to `limit` events, oldest first, deleting them in the caller's transaction: they
/// are gone once it commits (after the broker confirmed them), and back if it rolls back or
/// the process dies. `SKIP LOCKED` keeps concurrent relays (every API replica runs one) on
/// different rows.
pub async fn take_events(tx: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<EventRow>> {
    let rows = sqlx::query(
        "DELETE FROM events WHERE id = ANY(ARRAY( \
           SELECT id FROM events ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)) \
         RETURNING id, webhook_id, body",
    )
    .bind(limit)
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    let mut events = rows
        .iter()
        .map(|r| {
            Ok(EventRow {
                id: r.try_get(0)?,
                webhook_id: r.try_get(1)?,
                body: r.try_get(2)?,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    events.sort_by_key(|e| e.id);
    Ok(events)
}

/// Events waiting to be published (for `/metrics`).
pub async fn events_waiting(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await
}

/// Marks up to `limit` pending verifications whose code ran out `expired` (a job still queued
/// with them: `expired` too, so no worker sends it); returns how many. Reads already show
/// such a verification as expired; this makes it so in the table, which raises
/// `verification.expired` when events are on, and keeps the index of pending rows to the
/// live ones. Each row is taken once (`SKIP LOCKED`, and the update re-checks the status).
pub async fn expire_due(pool: &PgPool, limit: i64) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE verifications SET status = 'expired', updated_at = now(), \
           delivery_status = CASE WHEN delivery_status = 'queued' THEN 'expired' ELSE delivery_status END \
         WHERE id = ANY(ARRAY( \
           SELECT id FROM verifications WHERE status = 'pending' AND expires_at <= now() \
           ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)) \
           AND status = 'pending' AND expires_at <= now()",
    )
    .bind(limit)
    .persistent(false)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
