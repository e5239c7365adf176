//! The transactional outbox: how a start's send job gets from PostgreSQL to RabbitMQ.
//!
//! A start commits its verification and its send job (an outbox row) in one statement and is
//! answered then; the [`Dispatcher`] publishes the jobs of each committed batch together,
//! with publisher confirms, and the [`Settler`] deletes the outbox rows of confirmed jobs in
//! batches. If the dispatch fails (the broker went away) or this process dies first, the
//! relay ([`Relay`]) publishes the rows left behind once they are `OUTBOX_RELAY_AFTER_SECONDS`
//! old.
//!
//! Why an outbox and not a sweeper over `queued` verifications: the job carries the code,
//! which only the start knew (the database holds an HMAC), so it must be written down with
//! the verification; and a sweeper cannot tell a job that was never published from one that
//! waits in a long queue during a burst, so it would re-publish exactly when the queue is
//! longest. An outbox row exists only until its confirm, so the relay publishes only what
//! was truly never confirmed. The relay may publish a job twice (it dies between confirm
//! and delete); the worker's claim sends it once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::broker::Publisher;
use common::code::{CodeHasher, CodeLength};
use common::job::SendJob;
use common::metric_names as names;
use common::repo;
use common::seal::Sealer;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Jobs taken per relay statement, and how long a taken job is reserved for this relay.
const RELAY_BATCH: i64 = 500;
const LEASE_SECONDS: i64 = 60;

/// The relay: publishes the outbox rows left behind (dispatch failed, or the process died).
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    publisher: Arc<Publisher>,
    /// Seals again the codes of rows written before codes were sealed with an AEAD.
    sealer: Sealer,
    /// Opens those rows' codes.
    hasher: CodeHasher,
}

impl Relay {
    pub fn new(pool: PgPool, publisher: Arc<Publisher>, sealer: Sealer, hasher: CodeHasher) -> Self {
        Self {
            pool,
            publisher,
            sealer,
            hasher,
        }
    }

    /// Runs relay rounds until `shutdown`, every `interval`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match self.relay_once().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(published = n, "outbox relay published send jobs left behind"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "outbox relay round failed"),
            }
        }
    }

    /// One round: publishes every due job, oldest first, a batch at a time; returns how many
    /// were published. Stops at the first batch the broker did not fully confirm (what is left
    /// stays due for the next round).
    pub async fn relay_once(&self) -> anyhow::Result<usize> {
        let mut published = 0;
        loop {
            let taken = repo::take_due_outbox(&self.pool, RELAY_BATCH, LEASE_SECONDS).await?;
            let more = taken.len() as i64 == RELAY_BATCH;
            let (mut jobs, mut moot) = (Vec::with_capacity(taken.len()), Vec::new());
            for row in taken {
                let id = row.verification_id;
                // Superseded, expired or approved meanwhile: nothing worth sending.
                match row.pending.then(|| self.sealed_text(id, &row.sealed_code)).flatten() {
                    Some(sealed) => jobs.push(SendJob::new(id, sealed, row.request_id)),
                    None => moot.push(id),
                }
            }
            if !moot.is_empty() {
                repo::delete_outbox_rows(&self.pool, &moot).await?;
            }
            let (confirmed, failure) = confirmed_ids(&jobs, self.publisher.publish_all(&jobs).await);
            repo::delete_outbox_rows(&self.pool, &confirmed).await?;
            metrics::counter!(names::OUTBOX_RELAYED).increment(confirmed.len() as u64);
            published += confirmed.len();
            if let Some(e) = failure {
                return Err(e.context(format!("{published} jobs published before the failure")));
            }
            if !more {
                return Ok(published);
            }
        }
    }

    /// The job's sealed code: the row's sealed bytes, copied unopened. A row written before codes
    /// were sealed with an AEAD holds a short XOR-sealed code: opened and sealed again here.
    fn sealed_text(&self, id: Uuid, sealed: &[u8]) -> Option<String> {
        if sealed.len() > usize::from(CodeLength::MAX) {
            return Some(common::seal::to_text(sealed));
        }
        let code = self.hasher.open_pre_aead_outbox_code(id, sealed)?;
        Some(self.sealer.seal_text(id, &code))
    }
}

/// The ids of the confirmed jobs, and the first failure if any.
fn confirmed_ids(jobs: &[SendJob], results: Vec<anyhow::Result<()>>) -> (Vec<Uuid>, Option<anyhow::Error>) {
    let mut failure = None;
    let mut confirmed = Vec::with_capacity(jobs.len());
    for (job, result) in jobs.iter().zip(results) {
        match result {
            Ok(()) => confirmed.push(job.verification_id),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    (confirmed, failure)
}

/// Most jobs published together by one dispatcher.
const DISPATCH_BATCH: usize = 1000;
/// Dispatchers running at once: while one waits for its confirms, the next batch goes out.
const DISPATCHERS: usize = 2;

/// Publishes the jobs of committed starts, many at a time, and settles their outbox rows.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::UnboundedSender<SendJob>,
    /// Jobs handed over and not yet published or given up.
    pending: Arc<AtomicUsize>,
}

impl Dispatcher {
    /// The handle, and the dispatcher loops for the caller to run; each loop ends once every
    /// handle is gone and what was handed over is published (or given up to the relay).
    pub fn new(publisher: Arc<Publisher>, settler: Settler) -> (Self, Vec<impl Future<Output = ()> + Send + 'static>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        let pending = Arc::new(AtomicUsize::new(0));
        let loops = (0..DISPATCHERS)
            .map(|_| {
                dispatch_loop(
                    Arc::clone(&publisher),
                    settler.clone(),
                    Arc::clone(&rx),
                    Arc::clone(&pending),
                )
            })
            .collect();
        (Self { tx, pending }, loops)
    }

    /// Queues the jobs of committed starts for publishing.
    pub fn dispatch(&self, jobs: Vec<SendJob>) {
        for job in jobs {
            self.pending.fetch_add(1, Ordering::Relaxed);
            if self.tx.send(job).is_err() {
                // Only once the dispatchers are gone (shutting down): the relay covers it.
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits (at most `within`) until every job handed over has been published or given up
    /// to the relay; for a graceful shutdown. Returns how many are still pending.
    pub async fn drain(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = self.pending.load(Ordering::Relaxed);
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One dispatcher: publishes batches of handed-over jobs and settles the confirmed ones.
async fn dispatch_loop(
    publisher: Arc<Publisher>,
    settler: Settler,
    rx: Arc<Mutex<mpsc::UnboundedReceiver<SendJob>>>,
    pending: Arc<AtomicUsize>,
) {
    let mut batch = Vec::with_capacity(DISPATCH_BATCH);
    while rx.lock().await.recv_many(&mut batch, DISPATCH_BATCH).await > 0 {
        let (confirmed, failure) = confirmed_ids(&batch, publisher.publish_all(&batch).await);
        if let Some(e) = failure {
            tracing::warn!(
                error = format!("{e:#}"),
                unconfirmed = batch.len() - confirmed.len(),
                "send jobs not confirmed by the broker; the outbox relay will publish them"
            );
        }
        for id in confirmed {
            settler.settle(id);
        }
        pending.fetch_sub(batch.len(), Ordering::Relaxed);
        batch.clear();
    }
}

/// Deletes the outbox rows of confirmed jobs in batches, off the request path.
///
/// Deleting each row on its own would cost a commit per start; the settler collects the ids
/// and deletes them together, every few milliseconds under load. If this process dies with
/// ids not yet deleted, the relay publishes those jobs once more after
/// `OUTBOX_RELAY_AFTER_SECONDS`, and the worker's claim sees they were sent: the price is a
/// wasted message, not a second SMS.
#[derive(Clone)]
pub struct Settler {
    tx: mpsc::UnboundedSender<Uuid>,
}

/// Most ids deleted by one statement.
const SETTLE_BATCH: usize = 1000;

impl Settler {
    /// The handle, and the settler loop for the caller to run; the loop ends once every
    /// handle is gone, after deleting what is left.
    pub fn new(pool: PgPool) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Uuid>();
        let settling = async move {
            let mut batch = Vec::with_capacity(SETTLE_BATCH);
            while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
                if let Err(e) = repo::delete_outbox_rows(&pool, &batch).await {
                    tracing::warn!(error = %e, rows = batch.len(), "could not delete settled outbox rows; the relay will publish them again");
                }
                batch.clear();
            }
        };
        (Self { tx }, settling)
    }

    /// Queues the outbox row of a confirmed job for deletion.
    pub fn settle(&self, id: Uuid) {
        // Fails only once the task is gone (shutting down): the relay covers the row.
        let _ = self.tx.send(id);
    }
}
