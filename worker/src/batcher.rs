//! Requests of concurrent sends made together: a task takes whatever has queued up (at most
//! a batch) and runs it as one database call, so a batch costs one round trip and one commit
//! instead of one per send. Each request gets its own answer, or the batch's error.

use std::future::Future;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// The batch's error, for each of its requests: an outage stays recognisable as one
/// ([`common::db::Unreachable`]).
#[derive(Debug, Clone)]
enum Failed {
    Unreachable(common::db::Unreachable),
    Other(String),
}

type Reply<R> = oneshot::Sender<Result<R, Failed>>;

/// A handle to a batching task.
pub struct Batcher<T, R> {
    /// What a batch does, for error messages ("claiming a batch of sends").
    what: &'static str,
    tx: mpsc::UnboundedSender<(T, Reply<R>)>,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Runs batches of at most `most` requests through `run`, which answers each request of
    /// a batch in order (one answer per request).
    pub fn spawn<F, Fut>(pool: PgPool, most: usize, what: &'static str, run: F) -> Self
    where
        F: Fn(PgPool, Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = sqlx::Result<Vec<R>>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(T, Reply<R>)>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(most);
            while rx.recv_many(&mut batch, most).await > 0 {
                let (items, replies): (Vec<T>, Vec<Reply<R>>) = batch.drain(..).unzip();
                let asked = items.len();
                match run(pool.clone(), items).await {
                    Ok(answers) if answers.len() == asked => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(Ok(answer));
                        }
                    }
                    Ok(answers) => {
                        let e = Failed::Other(format!("{} answers to {asked} requests", answers.len()));
                        replies.into_iter().for_each(|reply| drop(reply.send(Err(e.clone()))));
                    }
                    Err(e) => {
                        let text = format!("{e:#}");
                        let e = if common::db::is_outage(&e) {
                            Failed::Unreachable(common::db::Unreachable(text))
                        } else {
                            Failed::Other(text)
                        };
                        replies.into_iter().for_each(|reply| drop(reply.send(Err(e.clone()))));
                    }
                }
            }
        });
        Self { what, tx }
    }

    /// Runs `item` in the next batch; returns its answer once the batch has committed. An
    /// error means nothing of the batch was done.
    pub async fn ask(&self, item: T) -> anyhow::Result<R> {
        let what = self.what;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((item, reply))
            .map_err(|_| anyhow::anyhow!("{what}: the batching task stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("{what}: the batching task dropped a request"))?
            .map_err(|failed| match failed {
                Failed::Unreachable(e) => anyhow::Error::new(e).context(format!("{what} failed")),
                Failed::Other(e) => anyhow::anyhow!("{what} failed: {e}"),
            })
    }
}
