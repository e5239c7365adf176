//! Whether PostgreSQL answers, as this worker's jobs last found it.
//!
//! A database outage is not a fault of the jobs that meet it. A job that finds the database
//! unreachable reports it here and waits, holding its delivery, until a probe (one ping a
//! second) finds the database back; jobs delivered meanwhile wait before touching it, so a
//! worker takes no new work while it is down. Handing the jobs back to the queue instead
//! would count every hand-back as a delivery on the quorum queue, and an outage of a minute
//! would push jobs towards the poison limit and the dead-letter queue.
//!
//! How long a job can be held: RabbitMQ's `consumer_timeout` (30 minutes by default) closes
//! the channel of a delivery unacknowledged for longer; its jobs then come back with one
//! delivery counted, and are held again. Five such returns make a job poison, so an outage
//! must last hours before a job is dead-lettered for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the probe pings a database that was found down.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Shared by every in-flight job of a worker.
#[derive(Clone)]
pub struct DatabaseGate {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    up: watch::Sender<bool>,
    probing: AtomicBool,
}

impl DatabaseGate {
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                up: watch::Sender::new(true),
                probing: AtomicBool::new(false),
            }),
        }
    }

    /// Whether the database answered the last time a job or the probe asked.
    pub fn is_up(&self) -> bool {
        *self.inner.up.borrow()
    }

    /// A job found the database unreachable: jobs wait until the probe finds it back.
    pub fn report_down(&self) {
        self.inner.up.send_replace(false);
        if self.inner.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let gate = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if common::repo::ping(&gate.inner.pool).await {
                    break;
                }
            }
            gate.inner.probing.store(false, Ordering::Release);
            gate.inner.up.send_replace(true);
            tracing::info!("the database answers again; held jobs go on");
        });
    }

    /// Returns once the database is up, or fails when `shutdown` comes first (the job then
    /// goes back to the queue).
    pub async fn wait_until_up(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut up = self.inner.up.subscribe();
        tokio::select! {
            waited = up.wait_for(|up| *up) => waited.map(drop).map_err(anyhow::Error::from),
            _ = shutdown.cancelled() => anyhow::bail!("stopping while the database is unreachable"),
        }
    }
}
