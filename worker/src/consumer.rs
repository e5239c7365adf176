//! The consumer loop: connects to RabbitMQ (again, after any failure), declares the
//! topology, consumes with a prefetch of `WORKER_CONCURRENCY`, runs each job as its own task,
//! and acks only once the job's outcome is committed in PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use common::job::SendJob;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::send::{JobOutcome, SendContext};

/// Pause before a job whose processing failed (PostgreSQL down) goes back to the queue, so
/// an outage does not turn into a hot redelivery loop.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// Consumes until `shutdown`, reconnecting with capped exponential backoff after any
/// connection or channel failure. `connected` tells `/readyz` whether a consumer is live.
pub async fn run(
    ctx: Arc<SendContext>,
    connected: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match session(&ctx, &connected, &shutdown).await {
            Ok(()) => break,
            Err(e) => {
                connected.store(false, Ordering::Relaxed);
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = delay.as_millis() as u64,
                    "RabbitMQ session ended; reconnecting"
                );
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    connected.store(false, Ordering::Relaxed);
    Ok(())
}

/// One connection's life. `Ok` only after a clean shutdown.
async fn session(
    ctx: &Arc<SendContext>,
    connected: &AtomicBool,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let config = &ctx.config;
    let conn = common::broker::connect(config.amqp_url.expose(), "verify-worker")
        .await
        .context("Failed to connect to RabbitMQ")?;
    let channel = conn
        .create_channel()
        .await
        .context("Failed to open a channel")?;
    config
        .topology
        .declare(&channel)
        .await
        .context("Failed to declare the queues")?;
    channel
        .basic_qos(config.concurrency, BasicQosOptions::default())
        .await
        .context("Failed to set the prefetch")?;
    let mut consumer = channel
        .basic_consume(
            config.topology.send_queue().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("Failed to start consuming")?;
    connected.store(true, Ordering::Relaxed);
    tracing::info!(
        queue = config.topology.send_queue(),
        prefetch = config.concurrency,
        "consuming"
    );

    let in_flight = TaskTracker::new();
    let ended = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let ctx = Arc::clone(ctx);
                    in_flight.spawn(async move { handle(&ctx, delivery).await });
                }
                Some(Err(e)) => break Err(anyhow!(e).context("consumer failed")),
                None => break Err(anyhow!("the broker closed the consumer")),
            },
        }
    };
    connected.store(false, Ordering::Relaxed);
    if ended.is_ok() {
        // Stop taking new jobs, then let in-flight sends finish within the grace period;
        // whatever is still unacked when the connection closes goes back to the queue.
        if let Err(e) = channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await
        {
            tracing::warn!(error = %e, "could not cancel the consumer");
        }
    }
    in_flight.close();
    if tokio::time::timeout(config.shutdown_grace, in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = in_flight.len(),
            "sends still running at the end of the grace period; they will be redelivered"
        );
    }
    if let Err(e) = conn.close(200, "worker stopping".into()).await {
        tracing::debug!(error = %e, "closing the connection");
    }
    ended
}

/// Runs one delivery to its ack, reject or requeue.
async fn handle(ctx: &SendContext, delivery: Delivery) {
    let job = match SendJob::from_bytes(&delivery.data) {
        Ok(job) => job,
        Err(e) => {
            // Never back to the head of the queue: the queue dead-letters it.
            tracing::warn!(error = %e, "unreadable send job; dead-lettering it");
            if let Err(e) = delivery.reject(BasicRejectOptions { requeue: false }).await {
                tracing::warn!(error = %e, "could not reject a message");
            }
            return;
        }
    };
    match ctx.process(&job).await {
        Ok(outcome) => {
            log_outcome(&job, &outcome);
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                // The outcome is committed; a redelivery will find it and skip.
                tracing::warn!(error = %e, "could not ack a finished job");
            }
        }
        Err(e) => {
            tracing::warn!(verification_id = %job.verification_id, error = format!("{e:#}"), "job failed; returning it to the queue");
            tokio::time::sleep(REQUEUE_PAUSE).await;
            if let Err(e) = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
            {
                tracing::warn!(error = %e, "could not requeue a message");
            }
        }
    }
}

fn log_outcome(job: &SendJob, outcome: &JobOutcome) {
    let id = job.verification_id;
    match outcome {
        JobOutcome::Submitted { sid } => {
            metrics::counter!("verify_jobs_total", "outcome" => "submitted").increment(1);
            tracing::info!(verification_id = %id, message_sid = %sid, "SMS submitted");
        }
        JobOutcome::Skipped(reason) => {
            metrics::counter!("verify_jobs_total", "outcome" => "skipped").increment(1);
            tracing::info!(verification_id = %id, reason, "SMS not sent");
        }
        JobOutcome::Failed { twilio_code } => {
            metrics::counter!("verify_jobs_total", "outcome" => "failed").increment(1);
            tracing::warn!(verification_id = %id, twilio_code, "SMS failed");
        }
    }
}
