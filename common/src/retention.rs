//! The retention sweeper every `verify-api` and `verify-worker` process runs: at start, then
//! every [`SWEEP_EVERY`], it deletes data older than `RETENTION_DAYS`
//! ([`crate::repo::sweep_older_than`]). Sweepers of several processes share the work.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metric_names as names;

/// How often a process sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The setting's line for both binaries' tables.
pub const SETTING: crate::settings::Setting = crate::settings::Setting::with_default(
    "RETENTION_DAYS",
    "30",
    "verifications older than this many days are deleted with their send attempts and delivery events, 1 to 3650",
);

/// Reads `RETENTION_DAYS`.
pub fn days(env: &crate::settings::Env) -> Result<u32, crate::settings::SettingError> {
    env.number_in(SETTING.name, 1..=3650)
}

/// Sweeps until `shutdown`.
pub async fn run(pool: PgPool, days: u32, shutdown: CancellationToken) {
    loop {
        match crate::repo::sweep_older_than(&pool, days).await {
            Ok(swept) => {
                for (table, n) in [
                    ("verifications", swept.verifications),
                    ("delivery_events", swept.delivery_events),
                ] {
                    metrics::counter!(names::RETENTION_DELETED, "table" => table).increment(n);
                }
                if swept != crate::repo::Swept::default() {
                    tracing::info!(
                        verifications = swept.verifications,
                        delivery_events = swept.delivery_events,
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
