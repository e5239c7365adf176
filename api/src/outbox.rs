//! The outbox relay: publishes the send jobs of starts whose process died (or lost the
//! broker) between storing the verification and the broker's confirm.
//!
//! Why an outbox and not a sweeper over `queued` verifications: the job carries the code,
//! which only the start knew (the database holds an HMAC), so it must be written down with
//! the verification; and a sweeper cannot tell a job that was never published from one that
//! waits in a long queue during a burst, so it would re-publish exactly when the queue is
//! longest. An outbox row exists only until its confirm, so the relay publishes only what
//! was truly never confirmed. The cost: one more row written and deleted per start (in the
//! same statements as the verification's insert and the supersede, so no extra round trip).
//! The relay may publish a job twice (it dies between confirm and delete); the worker's
//! claim sends it once.

use std::time::Duration;

use common::job::SendJob;
use common::repo;
use common::status::VerificationStatus;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Jobs taken per round, and how long a taken job is reserved for this relay.
const BATCH: i64 = 100;
const LEASE_SECONDS: i64 = 60;

/// Runs rounds until `shutdown`, every `interval`.
pub async fn run(state: AppState, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match relay_once(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(published = n, "outbox relay published send jobs left behind"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "outbox relay round failed"),
        }
    }
}

/// One round: publishes the due jobs, oldest first; returns how many were published.
pub async fn relay_once(state: &AppState) -> anyhow::Result<usize> {
    let mut published = 0;
    for job in repo::take_due_outbox(&state.pool, BATCH, LEASE_SECONDS).await? {
        let id = job.verification_id;
        let verification = repo::find(&state.pool, id).await?;
        let pending = verification
            .as_ref()
            .filter(|v| v.status == VerificationStatus::Pending);
        let code = state.hasher.unseal(id, &job.sealed_code);
        let (Some(verification), Some(code)) = (pending, code) else {
            // Superseded, expired or approved meanwhile (or sealed under another secret):
            // nothing worth sending.
            repo::delete_outbox_rows(&state.pool, &[id]).await?;
            continue;
        };
        state
            .publisher
            .publish(&SendJob::new(id, code.expose().to_owned(), job.request_id))
            .await?;
        repo::confirm_published(&state.pool, verification).await?;
        metrics::counter!(common::metric_names::OUTBOX_RELAYED).increment(1);
        published += 1;
    }
    Ok(published)
}

/// Deletes the outbox rows of confirmed jobs in batches, off the request path.
///
/// A start whose number had no pending verification has nothing to supersede, so after the
/// confirm only its outbox row is left to drop; doing that per request would cost a second
/// commit per start. The settler collects the ids and deletes them together, every few
/// milliseconds under load. If this process dies with ids not yet deleted, the relay
/// publishes those jobs once more after `OUTBOX_RELAY_AFTER_SECONDS`, and the worker's claim
/// sees they were sent: the price is a wasted message, not a second SMS.
#[derive(Clone)]
pub struct Settler {
    tx: tokio::sync::mpsc::UnboundedSender<uuid::Uuid>,
}

/// Most ids deleted by one statement.
const SETTLE_BATCH: usize = 1000;

impl Settler {
    /// Starts the task; it runs until every sender is gone, then deletes what is left.
    pub fn spawn(pool: sqlx::PgPool) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<uuid::Uuid>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(SETTLE_BATCH);
            while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
                if let Err(e) = repo::delete_outbox_rows(&pool, &batch).await {
                    tracing::warn!(error = %e, rows = batch.len(), "could not delete settled outbox rows; the relay will publish them again");
                }
                batch.clear();
            }
        });
        Self { tx }
    }

    /// Queues the outbox row of a confirmed job for deletion.
    pub fn settle(&self, id: uuid::Uuid) {
        // Fails only once the task is gone (shutting down): the relay covers the row.
        let _ = self.tx.send(id);
    }
}
