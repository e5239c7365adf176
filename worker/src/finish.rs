//! The 201s of concurrent sends, recorded together: one statement (one commit) and one read
//! of early callbacks for every batch instead of for every send, as the API batches starts.
//! A send is acked only after its own batch committed.

use common::repo::{self, Submitted};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// Most sends recorded by one statement.
const BATCH: usize = 128;

/// The batch's result: an outage stays recognisable as one ([`common::db::Unreachable`]).
type Reply = oneshot::Sender<Result<(), Failed>>;

#[derive(Debug, Clone)]
enum Failed {
    Unreachable(common::db::Unreachable),
    Other(String),
}

/// A handle to the recording task.
#[derive(Clone)]
pub struct Finisher {
    tx: mpsc::UnboundedSender<(Submitted, Reply)>,
}

impl Finisher {
    pub fn spawn(pool: PgPool) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Submitted, Reply)>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let (sends, replies): (Vec<Submitted>, Vec<Reply>) = batch.drain(..).unzip();
                let result = repo::finish_submitted(&pool, &sends).await.map_err(|e| {
                    let text = format!("{e:#}");
                    if common::db::is_outage(&e) {
                        Failed::Unreachable(common::db::Unreachable(text))
                    } else {
                        Failed::Other(text)
                    }
                });
                for reply in replies {
                    let _ = reply.send(result.clone());
                }
            }
        });
        Self { tx }
    }

    /// Records a call's 201 and the verification as submitted; returns once committed. An
    /// error means nothing about the send is final (the job goes back to the queue, and the
    /// claim finds the 201's sid or looks it up).
    pub async fn submitted(&self, send: Submitted) -> anyhow::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((send, reply))
            .map_err(|_| anyhow::anyhow!("the submitted-send recorder stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the submitted-send recorder dropped a send"))?
            .map_err(|failed| match failed {
                Failed::Unreachable(e) => anyhow::Error::new(e).context("recording a batch of submitted sends failed"),
                Failed::Other(e) => anyhow::anyhow!("recording a batch of submitted sends failed: {e}"),
            })
    }
}
