//! The retention sweeper every `verify-api` and `verify-worker` process runs: at start, then
//! every [`SWEEP_EVERY`], it deletes data older than `RETENTION_DAYS`
//! ([`crate::settings::Shared::retention_days`]; [`crate::repo::sweep_older_than`]). Sweepers of several processes share the work.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metric_names as names;

/// How often a process sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Sweeps until `shutdown`.
pub async fn run(pool: PgPool, days: u32, shutdown: CancellationToken) {
    loop {
        match crate::repo::sweep_older_than(&pool, days).await {
            Ok(swept) => {
                for (table, n) in [
                    ("verifications", swept.verifications),
                    ("delivery_events", swept.delivery_events),
                    ("idempotency_keys", swept.idempotency_keys),
                ] {
                    metrics::counter!(names::RETENTION_DELETED, "table" => table).increment(n);
                }
                if swept != crate::repo::Swept::default() {
                    tracing::info!(
                        verifications = swept.verifications,
                        delivery_events = swept.delivery_events,
                        idempotency_keys = swept.idempotency_keys,
                        days,
                        "deleted data past its retention"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; trying again later"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}
