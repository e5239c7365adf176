//! Queue depth and waiting ages for operators: read from RabbitMQ (passive declares) and
//! PostgreSQL on an interval and kept as gauges, so scrapes never touch the broker.

use std::sync::Arc;
use std::time::Duration;

use common::broker::{Publisher, QueueDepth, QueueView, join_ages};
use common::metric_names as names;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::pumping::Guard;

/// Depths from the broker joined with waiting ages from the database.
pub async fn queue_views(pool: &PgPool, publisher: &Publisher) -> anyhow::Result<Vec<QueueView>> {
    let topology = publisher.topology();
    let depths: Vec<QueueDepth> = publisher.queue_depths().await?;
    let ages = common::repo::oldest_waiting(pool, topology.send_queue(), &topology.dead_letter_queue()).await?;
    Ok(join_ages(depths, &ages))
}

/// Refreshes the queue gauges every `interval` until `shutdown`.
/// The send queue's wait also tells the pumping guard how long to wait before judging.
pub async fn run(
    pool: PgPool,
    publisher: Arc<Publisher>,
    guard: Arc<Guard>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match queue_views(&pool, &publisher).await {
            Ok(views) => {
                record(&publisher, &views);
                let send = publisher.topology().send_queue();
                if let Some(wait) = views.iter().find(|v| v.name == send) {
                    guard.set_send_wait(Duration::from_secs_f64(
                        wait.oldest_queued_age_seconds.unwrap_or(0.0).max(0.0),
                    ));
                }
            }
            Err(e) => tracing::debug!(error = format!("{e:#}"), "queue gauges not refreshed"),
        }
        if publisher.topology().event_retries().is_some() {
            match common::repo::events_waiting(&pool).await {
                Ok(n) => metrics::gauge!(names::EVENTS_WAITING).set(n as f64),
                Err(e) => tracing::debug!(error = %e, "events gauge not refreshed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

fn record(publisher: &Publisher, views: &[QueueView]) {
    let dead = publisher.topology().dead_letter_queue();
    let send = publisher.topology().send_queue();
    for v in views {
        metrics::gauge!(names::QUEUE_READY, "queue" => v.name.clone()).set(f64::from(v.messages_ready));
        metrics::gauge!(names::QUEUE_CONSUMERS, "queue" => v.name.clone()).set(f64::from(v.consumers));
        if v.name == dead {
            metrics::gauge!(names::DEAD_LETTER_MESSAGES).set(f64::from(v.messages_ready));
        }
        if v.name == send {
            metrics::gauge!(names::OLDEST_QUEUED_AGE).set(v.oldest_queued_age_seconds.unwrap_or(0.0));
        }
    }
}
