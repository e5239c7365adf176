//! Start writes, batched: concurrent starts share one multi-row statement (one commit).
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

use std::collections::HashSet;

use common::job::SendJob;
use common::repo::{self, NewRow, Verification};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ApiError, is_outage};
use crate::outbox::Dispatcher;

/// Most starts written by one statement.
const BATCH: usize = 256;
/// Batches written at once.
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
                tokio::spawn(insert_batches(
                    pool.clone(),
                    rx,
                    relay_after_seconds,
                    dispatcher.clone(),
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

/// Splits `batch` into starts with distinct numbers (in arrival order) and the later
/// starts for numbers already taken, which wait for the next statement.
fn distinct_numbers(batch: Vec<Start>) -> (Vec<Start>, Vec<Start>) {
    let mut seen = HashSet::with_capacity(batch.len());
    batch.into_iter().partition(|s| seen.insert(s.row.phone_number.clone()))
}

async fn insert_batches(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<Start>,
    relay_after: i64,
    dispatcher: Dispatcher,
) {
    let mut waiting: Vec<Start> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut waiting);
        if batch.is_empty() {
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
        } else {
            while batch.len() < BATCH
                && let Ok(start) = rx.try_recv()
            {
                batch.push(start);
            }
        }
        let (now, later) = distinct_numbers(batch);
        waiting = later;
        write(&pool, now, relay_after, &dispatcher).await;
    }
}

async fn write(pool: &PgPool, batch: Vec<Start>, relay_after: i64, dispatcher: &Dispatcher) {
    let rows: Vec<NewRow> = batch.iter().map(|s| s.row.clone()).collect();
    match repo::insert_batch_with_outbox(pool, &rows, relay_after).await {
        Ok(stored) => {
            let mut jobs = Vec::with_capacity(batch.len());
            for (start, stored) in batch.into_iter().zip(stored) {
                jobs.push(start.job);
                let _ = start.reply.send(Ok(stored));
            }
            dispatcher.dispatch(jobs);
        }
        Err(e) => {
            let outage = is_outage(&e);
            let text = format!("{e:#}");
            for start in batch {
                let cause = anyhow::anyhow!("storing a batch of starts failed: {text}");
                let _ = start.reply.send(Err(if outage {
                    ApiError::Unavailable(cause)
                } else {
                    ApiError::Internal(cause)
                }));
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
        let (now, later) = distinct_numbers(batch);
        let ids = |v: &[Start]| v.iter().map(|s| s.row.id.as_u128()).collect::<Vec<_>>();
        assert_eq!(ids(&now), [1, 2]);
        assert_eq!(ids(&later), [3, 4]);
        let (now, later) = distinct_numbers(later);
        assert_eq!((ids(&now), ids(&later)), (vec![3], vec![4]));
    }
}
