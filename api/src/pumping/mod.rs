//! The SMS-pumping guard. Pumping traffic (starts to numbers that earn their owner a share of
//! the SMS price) never verifies, so the guard judges each number prefix on its conversion,
//! against its own usual volume, as Twilio's Fraud Guard does:
//!
//! - every replica counts its starts and approvals per prefix in 10-second buckets and adds
//!   them to `prefix_activity` every second (an approval counts in its start's bucket);
//! - every replica judges the prefixes every `PUMPING_EVALUATE_SECONDS` ([`judge`]) and pauses
//!   the suspected ones in `prefix_pauses` (an upsert that raises each pause, and its alert,
//!   once), then one of them folds the buckets that left the window into each prefix's
//!   baseline ([`common::guard::fold_into_baselines`]);
//! - every replica reads the enforced pauses every second into memory, so the request path
//!   refuses a paused prefix without a database round trip. A copy of shared state at most a
//!   second old: every decision lives in PostgreSQL.
//!
//! A start for a paused prefix answers 429 `suspected_pumping`; the safe list is never paused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::guard::{self, BUCKET_SECONDS};
use common::phone::PhoneNumber;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use pending::Pending;

mod config;
mod evaluate;
mod judge;
mod pending;

pub use config::{Mode, PumpingConfig};
pub use evaluate::{Snapshot, run as evaluate};

/// How often a replica adds its counts and reads the pauses.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// The guard as one replica holds it: its settings, its counts not yet flushed, its copy of
/// the enforced pauses, and the send queue's wait (from the queue monitor).
pub struct Guard {
    config: PumpingConfig,
    /// Whether the hard ceiling (`PREFIX_STARTS_PER_MINUTE`) is on: its pauses are enforced
    /// whatever the guard's mode.
    ceiling: bool,
    /// `PREFIX_PAUSE_SECONDS`: how long a first pause lasts.
    pause: Duration,
    counts: Mutex<Pending>,
    paused: RwLock<HashMap<String, Instant>>,
    /// Age of the oldest start still waiting for its SMS, in milliseconds.
    send_wait_ms: AtomicU64,
}

impl Guard {
    pub fn new(config: PumpingConfig, ceiling: bool, pause: Duration) -> Arc<Self> {
        Arc::new(Self {
            config,
            ceiling,
            pause,
            counts: Mutex::default(),
            paused: RwLock::default(),
            send_wait_ms: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &PumpingConfig {
        &self.config
    }

    /// Whether `number` is never paused (it starts with a safe prefix).
    pub fn is_safe(&self, number: &str) -> bool {
        self.config.is_safe_prefix(number)
    }

    /// How long the prefix of `phone` stays paused, if it is (and pauses apply to it).
    pub fn paused_for(&self, phone: &PhoneNumber) -> Option<Duration> {
        if !(self.config.mode == Mode::On || self.ceiling) || self.is_safe(phone.as_str()) {
            return None;
        }
        let until = *self
            .paused
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(phone.prefix())?;
        until.checked_duration_since(Instant::now())
    }

    /// Records a pause this replica just raised, before the next read of all of them.
    pub fn mark_paused(&self, prefix: &str, lasts: Duration) {
        self.paused
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prefix.to_owned(), Instant::now() + lasts);
    }

    /// Counts a stored start.
    pub fn record_start(&self, phone: &PhoneNumber) {
        self.add(phone, unix_now() as i64, 1, 0);
    }

    /// Counts an approval in the bucket of its verification's start (`started_at`); an
    /// approval of a start older than the window no longer counts anywhere.
    pub fn record_approval(&self, phone: &PhoneNumber, started_at: OffsetDateTime) {
        let started = started_at.unix_timestamp();
        if (unix_now() as i64 - started) as f64 <= self.config.window.as_secs_f64() {
            self.add(phone, started, 0, 1);
        }
    }

    fn add(&self, phone: &PhoneNumber, at: i64, started: i32, approved: i32) {
        let bucket = at - at.rem_euclid(BUCKET_SECONDS);
        let country = phone.country().unwrap_or("unknown");
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.add(phone.prefix(), country, bucket, started, approved);
    }

    /// Sets the send queue's wait, as the queue monitor last measured it.
    pub fn set_send_wait(&self, wait: Duration) {
        self.send_wait_ms.store(wait.as_millis() as u64, Ordering::Relaxed);
    }

    fn send_wait(&self) -> Duration {
        Duration::from_millis(self.send_wait_ms.load(Ordering::Relaxed))
    }

    /// Adds this replica's counts to PostgreSQL; on failure they are kept for the next try.
    async fn flush(&self, pool: &PgPool) {
        let taken = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return;
        }
        let rows = taken.into_rows();
        if let Err(e) = guard::add_activity(pool, &rows).await {
            tracing::warn!(error = %e, rows = rows.len(), "could not store the pumping guard's counts; keeping them");
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            for row in rows {
                counts.add(&row.prefix, &row.country, row.bucket, row.started, row.approved);
            }
        }
    }

    /// Reads the enforced pauses of every replica.
    async fn read_pauses(&self, pool: &PgPool) {
        match guard::enforced_pauses(pool).await {
            Ok(pauses) => {
                let now = Instant::now();
                let fresh = pauses.into_iter().map(|(p, left)| (p, now + left)).collect();
                *self.paused.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            }
            Err(e) => tracing::debug!(error = %e, "could not read the paused prefixes; keeping the last copy"),
        }
    }
}

/// Every second until `shutdown`: adds this replica's counts and reads the pauses. A last
/// flush at shutdown keeps the counts of the last second.
pub async fn sync(guard: Arc<Guard>, pool: PgPool, shutdown: CancellationToken) {
    loop {
        guard.flush(&pool).await;
        if guard.config.mode == Mode::On || guard.ceiling {
            guard.read_pauses(&pool).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(SYNC_EVERY) => {}
        }
    }
    guard.flush(&pool).await;
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
