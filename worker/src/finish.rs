//! The 201s of concurrent sends, recorded together: one statement (one commit) and one read
//! of early callbacks for every batch instead of for every send, as the API batches starts.
//! A send is acked only after its own batch committed.

use common::repo::{self, Submitted};
use sqlx::PgPool;

use crate::batcher::Batcher;

/// Most sends recorded by one statement.
const BATCH: usize = 128;

/// A handle to the recording task.
pub struct Finisher(Batcher<Submitted, ()>);

impl Finisher {
    pub fn spawn(pool: PgPool) -> Self {
        Self(Batcher::spawn(
            pool,
            BATCH,
            "recording a batch of submitted sends",
            |pool, sends| async move {
                repo::finish_submitted(&pool, &sends).await?;
                Ok(vec![(); sends.len()])
            },
        ))
    }

    /// Records a call's 201 and the verification as submitted; returns once committed. An
    /// error means nothing about the send is final (the job goes back to the queue, and the
    /// claim finds the 201's sid or looks it up).
    pub async fn submitted(&self, send: Submitted) -> anyhow::Result<()> {
        self.0.ask(send).await
    }
}
