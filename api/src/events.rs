//! Event webhooks, the API's part: the relay that publishes the `events` table (written by
//! triggers in the same transaction as each change) to the events queue, up to 25 events to
//! a message ([`event_pack`]), and the expiry sweep that turns a code running out into a
//! change of its own.
//!
//! Every API replica runs both. The relay deletes the rows it takes in a transaction that
//! commits only once the broker confirmed every one of them: rows come back if the broker
//! fails or the process dies, so an event is published at least once (twice only when the
//! commit itself is lost after the confirms; the `webhook-id` is the same, so receivers
//! drop the copy). `SKIP LOCKED` keeps the replicas' relays on different rows.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::broker::{Publisher, event_pack, event_properties};
use common::metric_names as names;
use common::repo;
use sqlx::PgPool;

/// Events per transaction; a full batch is followed by the next at once.
const BATCH: i64 = 500;
/// Pause after a round that found less than a batch: an event waits at most this long.
const IDLE: Duration = Duration::from_millis(200);
/// Pause after a failed round (the broker or the database is away).
const AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Verifications marked expired per statement.
const EXPIRE_BATCH: i64 = 500;

/// Publishes events until the task is dropped.
pub async fn relay(pool: PgPool, publisher: Arc<Publisher>) {
    loop {
        let pause = match relay_once(&pool, &publisher).await {
            Ok(n) if n as i64 == BATCH => Duration::ZERO,
            Ok(_) => IDLE,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "event relay round failed; the events stay for the next"
                );
                AFTER_FAILURE
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// One round: publishes up to a batch of events, oldest first; returns how many.
pub async fn relay_once(pool: &PgPool, publisher: &Publisher) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await.context("Failed to begin")?;
    let events = repo::take_events(&mut tx, BATCH)
        .await
        .context("Failed to take events")?;
    if events.is_empty() {
        return Ok(0);
    }
    let queue = publisher.topology().events_queue();
    let published = events.len();
    let messages: Vec<_> = events.chunks(event_pack::PER_MESSAGE).flat_map(messages).collect();
    let results = publisher.publish_batch(&queue, &messages).await;
    // Rolled back (by the drop) on any failure: every event of the batch comes back.
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e.context("an event was not confirmed"));
    }
    tx.commit().await.context("Failed to commit the published events")?;
    metrics::counter!(names::EVENTS_PUBLISHED).increment(published as u64);
    Ok(published)
}

/// The messages of some events: one pack, or each alone when there is one or a body is
/// not JSON (it is POSTed as it is, and its receiver says what it thinks of it).
fn messages(events: &[repo::EventRow]) -> Vec<(Vec<u8>, lapin::BasicProperties)> {
    let alone = || {
        events
            .iter()
            .map(|e| (e.body.clone().into_bytes(), event_properties(&e.webhook_id)))
            .collect()
    };
    if events.len() < 2 {
        return alone();
    }
    let pairs: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.webhook_id.as_str(), e.body.as_str()))
        .collect();
    match event_pack::pack(&pairs) {
        Some(body) => vec![(body, event_pack::pack_properties(events.len()))],
        None => alone(),
    }
}

/// Marks the verifications whose code ran out `expired`, every `interval`, until dropped.
pub async fn expire(pool: PgPool, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = expire_once(&pool).await {
            tracing::warn!(error = %e, "expiry sweep failed; the next one takes what is due");
        }
    }
}

/// One sweep: every verification due, a batch at a time; returns how many.
pub async fn expire_once(pool: &PgPool) -> sqlx::Result<u64> {
    let mut expired = 0;
    loop {
        let n = repo::expire_due(pool, EXPIRE_BATCH).await?;
        expired += n;
        if n < EXPIRE_BATCH as u64 {
            return Ok(expired);
        }
    }
}
