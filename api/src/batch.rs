//! Start writes and check reservations, batched: concurrent requests share one multi-row
//! statement (one round trip, one commit).
//!
//! A start is durable, and answered 202, once its verification and its send job are
//! committed together (the transactional outbox); the job is then handed to the
//! [`Dispatcher`], which publishes it moments later. What concurrent starts share is the
//! database round trip and the commit. Starts that arrive while a batch is being written
//! wait for the next one, so batches grow with the load and a lone start waits for no timer.
//!
//! A few inserters run at once, so one slow batch does not hold up the others, and every
//! number always goes to the same inserter: two starts for one number are never written by
//! concurrent statements, so the newer one always sees (and supersedes) the older one.
//! Within one inserter, a second start for a number already in the batch waits for the next.
//! Checks are batched the same way ([`CheckReserver`]), for the same reasons.

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
const INSERTERS: usize = 4;

/// A stored start: the verification, and how many older pending ones of its number it superseded.
pub type Stored = (Verification, i64);

struct Start {
    row: NewRow,
    job: SendJob,
    reply: oneshot::Sender<Result<Stored, ApiError>>,
}

/// A handle to the inserters.
#[derive(Clone)]
pub struct StartWriter {
    inserters: Vec<mpsc::UnboundedSender<Start>>,
}

impl StartWriter {
    pub fn spawn(pool: PgPool, relay_after_seconds: i64, dispatcher: Dispatcher) -> Self {
        let inserters = (0..INSERTERS)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                let (pool, dispatcher) = (pool.clone(), dispatcher.clone());
                tokio::spawn(run_batches(
                    rx,
                    |s: &Start| &s.row.phone_number,
                    move |batch| {
                        let (pool, dispatcher) = (pool.clone(), dispatcher.clone());
                        async move { write_starts(&pool, batch, relay_after_seconds, &dispatcher).await }
                    },
                ));
                tx
            })
            .collect();
        Self { inserters }
    }

    /// Stores a verification with its send job in the outbox, superseding older pending
    /// verifications of the number, and hands the job to the dispatcher.
    pub async fn insert(&self, row: NewRow, job: SendJob) -> Result<Stored, ApiError> {
        let (reply, answer) = oneshot::channel();
        let inserter = &self.inserters[route(&row.phone_number, self.inserters.len())];
        inserter
            .send(Start { row, job, reply })
            .map_err(|_| ApiError::Unavailable(anyhow::anyhow!("the start writer stopped")))?;
        answer
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("the start writer dropped a start")))?
    }
}

/// The inserter of a number (FNV-1a over its digits).
fn route(phone_number: &str, inserters: usize) -> usize {
    let hash = phone_number.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % inserters as u64) as usize
}

/// Splits `batch` into requests with distinct numbers (in arrival order) and the later
/// requests for numbers already taken, which wait for the next statement.
fn distinct_numbers<T>(batch: Vec<T>, number: fn(&T) -> &str) -> (Vec<T>, Vec<T>) {
    let mut seen = HashSet::with_capacity(batch.len());
    batch.into_iter().partition(|r| seen.insert(number(r).to_owned()))
}

/// Takes batches of distinct numbers from `rx` and hands each to `write`, until every
/// sender is gone.
async fn run_batches<T, F>(
    mut rx: mpsc::UnboundedReceiver<T>,
    number: fn(&T) -> &str,
    mut write: impl FnMut(Vec<T>) -> F,
) where
    F: Future<Output = ()>,
{
    let mut waiting: Vec<T> = Vec::new();
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
        let (now, later) = distinct_numbers(batch, number);
        waiting = later;
        write(now).await;
    }
}

/// Runs a batch statement again if PostgreSQL broke a deadlock by aborting it (possible
/// when another replica's batch locks some of the same rows in another order): the
/// statement was rolled back, so running it again is safe.
async fn retry_deadlocks<T, F>(mut statement: impl FnMut() -> F) -> sqlx::Result<T>
where
    F: Future<Output = sqlx::Result<T>>,
{
    let mut retries = 0;
    loop {
        match statement().await {
            Err(sqlx::Error::Database(e)) if retries < 3 && matches!(e.code().as_deref(), Some("40P01" | "40001")) => {
                retries += 1;
                tracing::warn!(error = %e, "batch statement aborted by a deadlock; running it again");
            }
            result => return result,
        }
    }
}

/// The answer for every request of a batch whose statement failed.
fn batch_failure(e: &sqlx::Error, what: &str) -> impl Fn() -> ApiError {
    let outage = is_outage(e);
    let text = format!("{what} failed: {e:#}");
    move || {
        let cause = anyhow::anyhow!(text.clone());
        if outage {
            ApiError::Unavailable(cause)
        } else {
            ApiError::Internal(cause)
        }
    }
}

async fn write_starts(pool: &PgPool, batch: Vec<Start>, relay_after: i64, dispatcher: &Dispatcher) {
    let rows: Vec<NewRow> = batch.iter().map(|s| s.row.clone()).collect();
    match retry_deadlocks(|| repo::insert_batch_with_outbox(pool, &rows, relay_after)).await {
        Ok(stored) => {
            let mut jobs = Vec::with_capacity(batch.len());
            for (start, stored) in batch.into_iter().zip(stored) {
                jobs.push(start.job);
                let _ = start.reply.send(Ok(stored));
            }
            dispatcher.dispatch(jobs);
        }
        Err(e) => {
            let error = batch_failure(&e, "storing a batch of starts");
            for start in batch {
                let _ = start.reply.send(Err(error()));
            }
        }
    }
}

struct Check {
    phone_number: String,
    reply: oneshot::Sender<Result<Option<ReservedCheck>, ApiError>>,
}

/// A handle to the check reservers: each check's attempt is counted by a statement shared
/// with concurrent checks ([`repo::reserve_checks`]). A number always goes to the same
/// reserver, and appears at most once per statement.
#[derive(Clone)]
pub struct CheckReserver {
    reservers: Vec<mpsc::UnboundedSender<Check>>,
}

impl CheckReserver {
    pub fn spawn(pool: PgPool) -> Self {
        let reservers = (0..INSERTERS)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                let pool = pool.clone();
                tokio::spawn(run_batches(
                    rx,
                    |c: &Check| &c.phone_number,
                    move |batch| {
                        let pool = pool.clone();
                        async move { reserve_checks(&pool, batch).await }
                    },
                ));
                tx
            })
            .collect();
        Self { reservers }
    }

    /// Counts one check attempt against the newest pending verification of the number;
    /// `None` if there is none that can be checked.
    pub async fn reserve(&self, phone_number: &str) -> Result<Option<ReservedCheck>, ApiError> {
        let (reply, answer) = oneshot::channel();
        let reserver = &self.reservers[route(phone_number, self.reservers.len())];
        let check = Check {
            phone_number: phone_number.to_owned(),
            reply,
        };
        reserver
            .send(check)
            .map_err(|_| ApiError::Unavailable(anyhow::anyhow!("the check reserver stopped")))?;
        answer
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("the check reserver dropped a check")))?
    }
}

async fn reserve_checks(pool: &PgPool, batch: Vec<Check>) {
    let numbers: Vec<&str> = batch.iter().map(|c| c.phone_number.as_str()).collect();
    match retry_deadlocks(|| repo::reserve_checks(pool, &numbers)).await {
        Ok(reserved) => {
            for (check, reserved) in batch.into_iter().zip(reserved) {
                let _ = check.reply.send(Ok(reserved));
            }
        }
        Err(e) => {
            let error = batch_failure(&e, "counting a batch of check attempts");
            for check in batch {
                let _ = check.reply.send(Err(error()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_always_goes_to_the_same_inserter_and_numbers_spread() {
        let numbers: Vec<String> = (0..1000).map(|i| format!("+1415555{i:04}")).collect();
        let mut per_inserter = [0usize; INSERTERS];
        for n in &numbers {
            let i = route(n, INSERTERS);
            assert_eq!(i, route(n, INSERTERS));
            per_inserter[i] += 1;
        }
        assert!(per_inserter.iter().all(|&c| c > 150), "{per_inserter:?}");
    }

    #[test]
    fn a_second_start_for_a_number_waits_for_the_next_statement() {
        let start = |n: &str, id: u128| {
            let id = uuid::Uuid::from_u128(id);
            Start {
                row: NewRow {
                    id,
                    phone_number: n.into(),
                    code_hmac: vec![],
                    max_check_attempts: 5,
                    ttl_seconds: 600.0,
                    request_id: None,
                    sealed_code: vec![],
                },
                job: SendJob::new(id, "123456".into(), None),
                reply: oneshot::channel().0,
            }
        };
        let batch = vec![start("+1", 1), start("+2", 2), start("+1", 3), start("+1", 4)];
        fn number(s: &Start) -> &str {
            &s.row.phone_number
        }
        let (now, later) = distinct_numbers(batch, number);
        let ids = |v: &[Start]| v.iter().map(|s| s.row.id.as_u128()).collect::<Vec<_>>();
        assert_eq!(ids(&now), [1, 2]);
        assert_eq!(ids(&later), [3, 4]);
        let (now, later) = distinct_numbers(later, number);
        assert_eq!((ids(&now), ids(&later)), (vec![3], vec![4]));
    }
}
