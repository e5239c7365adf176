//! Start writes and check reservations, batched: concurrent requests share one multi-row
//! statement (one round trip, one commit).
//!
//! A start is durable, and answered 202, once its verification and its send job are
//! committed together (the transactional outbox); the job is then handed to the
//! [`Dispatcher`], which publishes it moments later. What concurrent starts share is the
//! database round trip and the commit. Starts that arrive while a batch is being written
//! wait for the next one, so batches grow with the load and a lone start waits for no timer.
//!
//! Every number always goes to the same writer (lane): two starts for one number are never
//! written by concurrent statements, so the newer one always sees (and supersedes) the older
//! one. Within one lane, a second start for a number already in the batch waits for the next.
//! Checks are batched the same way ([`CheckReserver`]), for the same reasons, and so are the
//! `Idempotency-Key`s that requests take before they run ([`KeyTaker`]). The rate limits
//! of starts and checks are taken in batches too ([`LimitTaker`]), in arrival order, with
//! repeats of a number or an address in one batch.
//!
//! One lane of each kind runs: the fewer statements, the larger each batch and the less each
//! request costs PostgreSQL (parsing, planning, executor start-up, commit). Measured in
//! BENCHMARKS.md ("Batches too small").

use std::collections::HashSet;

use common::job::SendJob;
use common::repo::{self, NewRow, ReservedCheck, Verification};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ApiError, is_outage};
use crate::outbox::Dispatcher;

/// Most requests served by one statement.
const BATCH: usize = 256;
/// Statements of each kind under way at once.
const LANES: usize = 1;

/// A stored start: the verification, and how many older pending ones of its number it
/// superseded; `None` when the start's `Idempotency-Key` was to be taken by the statement and
/// was found taken (nothing stored: see [`repo::StartKey::Claim`]).
pub type Stored = Option<(Verification, i64)>;

type Reply<R> = oneshot::Sender<Result<R, ApiError>>;
type Batch<T, R> = Vec<Request<T, R>>;

/// One request waiting for its batch: its number, what it carries, where its answer goes.
struct Request<T, R> {
    number: String,
    item: T,
    reply: Reply<R>,
}

/// Batch writers of one kind, each serving a fixed share of the numbers.
struct Lanes<T, R> {
    lanes: Vec<mpsc::UnboundedSender<Request<T, R>>>,
    /// What the writers do, for errors: "the start writer", "the check reserver".
    name: &'static str,
}

impl<T: Send + 'static, R: Send + 'static> Lanes<T, R> {
    /// The handle to `lanes` writers, and their loops for the caller to run; each loop hands
    /// its batches to `write`, and ends once every handle is gone and its requests are served.
    /// A batch holds each number at most once unless `repeats` (its requests are then
    /// handled in arrival order by `write`).
    fn new<F, Fut>(
        name: &'static str,
        lanes: usize,
        repeats: bool,
        write: F,
    ) -> (Self, Vec<impl Future<Output = ()> + Send + 'static>)
    where
        F: Fn(Vec<Request<T, R>>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (lanes, loops) = (0..lanes)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                (tx, run_batches(rx, repeats, write.clone()))
            })
            .unzip();
        (Self { lanes, name }, loops)
    }

    /// Hands `item` to the writer of `number` and waits for its batch's answer.
    async fn ask(&self, number: String, item: T) -> Result<R, ApiError> {
        let (reply, answer) = oneshot::channel();
        let lane = &self.lanes[route(&number, self.lanes.len())];
        let name = self.name;
        lane.send(Request { number, item, reply })
            .map_err(|_| ApiError::Unavailable(anyhow::anyhow!("{name} stopped")))?;
        answer
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("{name} dropped a request")))?
    }
}

/// A handle to the start writers.
pub struct StartWriter(Lanes<(NewRow, SendJob), Stored>);

impl StartWriter {
    /// The handle, and the writers' loops for the caller to run; they end once the handle is
    /// gone and every request handed over is answered.
    pub fn new(
        pool: PgPool,
        relay_after_seconds: i64,
        dispatcher: Dispatcher,
    ) -> (Self, Vec<impl Future<Output = ()> + Send + 'static>) {
        let (lanes, loops) = Lanes::new("the start writer", LANES, false, move |batch| {
            let (pool, dispatcher) = (pool.clone(), dispatcher.clone());
            async move { write_starts(&pool, batch, relay_after_seconds, &dispatcher).await }
        });
        (Self(lanes), loops)
    }

    /// Stores a verification with its send job in the outbox, superseding older pending
    /// verifications of the number, and hands the job to the dispatcher.
    pub async fn insert(&self, row: NewRow, job: SendJob) -> Result<Stored, ApiError> {
        self.0.ask(row.phone_number.clone(), (row, job)).await
    }
}

/// A handle to the check reservers: each check's attempt is counted by a statement shared
/// with concurrent checks ([`repo::reserve_checks`]). A number always goes to the same
/// reserver, and appears at most once per statement.
pub struct CheckReserver(Lanes<(), Option<ReservedCheck>>);

impl CheckReserver {
    /// The handle, and the reservers' loops for the caller to run, like [`StartWriter::new`].
    pub fn new(pool: PgPool) -> (Self, Vec<impl Future<Output = ()> + Send + 'static>) {
        let (lanes, loops) = Lanes::new("the check reserver", LANES, false, move |batch| {
            let pool = pool.clone();
            async move { reserve_checks(&pool, batch).await }
        });
        (Self(lanes), loops)
    }

    /// Counts one check attempt against the newest pending verification of the number;
    /// `None` if there is none that can be checked.
    pub async fn reserve(&self, phone_number: &str) -> Result<Option<ReservedCheck>, ApiError> {
        self.0.ask(phone_number.to_owned(), ()).await
    }
}

/// The lane of a number (FNV-1a over its digits).
fn route(phone_number: &str, lanes: usize) -> usize {
    let hash = phone_number.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % lanes as u64) as usize
}

/// Splits `batch` into requests with distinct numbers (in arrival order) and the later
/// requests for numbers already taken, which wait for the next statement.
fn distinct_numbers<T, R>(batch: Batch<T, R>) -> (Batch<T, R>, Batch<T, R>) {
    let mut seen = HashSet::with_capacity(batch.len());
    batch.into_iter().partition(|r| seen.insert(r.number.clone()))
}

/// Takes batches from `rx` (of distinct numbers unless `repeats`) and hands each to
/// `write`, until every sender is gone.
async fn run_batches<T, R, F>(
    mut rx: mpsc::UnboundedReceiver<Request<T, R>>,
    repeats: bool,
    write: impl Fn(Vec<Request<T, R>>) -> F,
) where
    F: Future<Output = ()>,
{
    let mut waiting = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut waiting);
        if batch.is_empty() {
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
        } else {
            while batch.len() < BATCH
                && let Ok(request) = rx.try_recv()
            {
                batch.push(request);
            }
        }
        if repeats {
            write(batch).await;
        } else {
            let (now, later) = distinct_numbers(batch);
            waiting = later;
            write(now).await;
        }
    }
}

/// Runs a batch statement again when it failed only because of another replica's
/// concurrent batch: PostgreSQL broke a deadlock by aborting it (possible when the other
/// batch locks some of the same rows in another order), or the other replica committed a
/// pending verification for one of the numbers after this statement began
/// ([`repo::is_pending_conflict`]; the run again supersedes it). The statement was rolled
/// back, so running it again is safe. Each conflict needs a start for the same number
/// committing on another replica at that moment, so a handful of runs always suffices.
async fn retry_conflicts<T, F>(mut statement: impl FnMut() -> F) -> sqlx::Result<T>
where
    F: Future<Output = sqlx::Result<T>>,
{
    const MAX_RETRIES: u32 = 8;
    let mut retries = 0;
    loop {
        match statement().await {
            Err(e) if retries < MAX_RETRIES && repo::is_pending_conflict(&e) => {
                retries += 1;
                metrics::counter!(common::metric_names::BATCH_CONFLICTS, "kind" => "pending_number").increment(1);
                tracing::debug!(error = %e, "another replica started a verification for a number of this batch; running it again");
            }
            Err(e) if retries < 3 && common::db::is_deadlock(&e) => {
                retries += 1;
                metrics::counter!(common::metric_names::BATCH_CONFLICTS, "kind" => "deadlock").increment(1);
                tracing::warn!(error = %e, "batch statement aborted by a deadlock; running it again");
            }
            result => return result,
        }
    }
}

/// Splits a batch into its items and the replies owed for them, in the same order.
fn split<T, R>(batch: Vec<Request<T, R>>) -> (Vec<T>, Vec<Reply<R>>) {
    batch.into_iter().map(|r| (r.item, r.reply)).unzip()
}

/// Answers every request of a batch: each its own result, or all the statement's failure.
fn answer<R>(replies: Vec<Reply<R>>, results: sqlx::Result<Vec<R>>, what: &str) {
    match results {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            let outage = is_outage(&e);
            let text = format!("{what} failed: {e:#}");
            for reply in replies {
                let cause = anyhow::anyhow!(text.clone());
                let _ = reply.send(Err(if outage {
                    ApiError::Unavailable(cause)
                } else {
                    ApiError::Internal(cause)
                }));
            }
        }
    }
}

async fn write_starts(
    pool: &PgPool,
    batch: Vec<Request<(NewRow, SendJob), Stored>>,
    relay_after: i64,
    dispatcher: &Dispatcher,
) {
    let (items, replies) = split(batch);
    let (rows, jobs): (Vec<NewRow>, Vec<SendJob>) = items.into_iter().unzip();
    let stored = retry_conflicts(|| repo::insert_batch_with_outbox(pool, &rows, relay_after)).await;
    if let Ok(stored) = &stored {
        // A test number's start has no job to publish, nor has a start that was not stored.
        let jobs = jobs
            .into_iter()
            .zip(rows.iter().zip(stored))
            .filter(|(_, (row, stored))| !row.test && stored.is_some())
            .map(|(job, _)| job);
        dispatcher.dispatch(jobs.collect());
    }
    answer(replies, stored, "storing a batch of starts");
}

async fn reserve_checks(pool: &PgPool, batch: Vec<Request<(), Option<ReservedCheck>>>) {
    let numbers: Vec<&str> = batch.iter().map(|r| r.number.as_str()).collect();
    let reserved = retry_conflicts(|| repo::reserve_checks(pool, &numbers)).await;
    answer(split(batch).1, reserved, "counting a batch of check attempts");
}

mod keys;
mod limits;
#[cfg(test)]
mod tests;
mod warm;

pub use keys::KeyTaker;
pub use limits::LimitTaker;
pub use warm::warm;
