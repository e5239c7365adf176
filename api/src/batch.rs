//! Start writes, batched: concurrent starts share one multi-row statement (one commit).
//!
//! Each start still answers only after its own rows are committed and its own job is
//! confirmed; what is shared is the database round trip and the commit. Starts that arrive
//! while a batch is being written wait for the next one, so batches grow with the load and a
//! lone start waits for no timer. A few inserters run at once, so one slow batch does not
//! hold up the others.

use std::sync::Arc;

use common::repo::{self, NewRow, Verification};
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::error::{ApiError, is_outage};

/// Most starts written by one statement.
const BATCH: usize = 256;
/// Batches written at once.
const INSERTERS: usize = 4;

type Reply = oneshot::Sender<Result<(Verification, bool), ApiError>>;

/// A handle to the inserters.
#[derive(Clone)]
pub struct StartWriter {
    tx: mpsc::UnboundedSender<(NewRow, Reply)>,
}

impl StartWriter {
    pub fn spawn(pool: PgPool, relay_after_seconds: i64) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..INSERTERS {
            tokio::spawn(insert_batches(pool.clone(), Arc::clone(&rx), relay_after_seconds));
        }
        Self { tx }
    }

    /// Stores a verification and its outbox row; returns it and whether it supersedes an
    /// older pending verification of the number.
    pub async fn insert(&self, row: NewRow) -> Result<(Verification, bool), ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((row, reply))
            .map_err(|_| ApiError::Unavailable(anyhow::anyhow!("the start writer stopped")))?;
        answer
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("the start writer dropped a start")))?
    }
}

async fn insert_batches(pool: PgPool, rx: Arc<Mutex<mpsc::UnboundedReceiver<(NewRow, Reply)>>>, relay_after: i64) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.lock().await.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let (rows, replies): (Vec<NewRow>, Vec<Reply>) = batch.drain(..).unzip();
        match repo::insert_batch_with_outbox(&pool, &rows, relay_after).await {
            Ok(stored) => {
                for (reply, row) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(row));
                }
            }
            Err(e) => {
                let outage = is_outage(&e);
                let text = format!("{e:#}");
                for reply in replies {
                    let cause = anyhow::anyhow!("storing a batch of starts failed: {text}");
                    let _ = reply.send(Err(if outage {
                        ApiError::Unavailable(cause)
                    } else {
                        ApiError::Internal(cause)
                    }));
                }
            }
        }
    }
}
