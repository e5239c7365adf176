//! The consumer loop: connects to RabbitMQ (again, after any failure), declares the
//! topology, consumes with a prefetch of `WORKER_CONCURRENCY`, runs each job as its own task,
//! and acks only once the job's outcome is committed in PostgreSQL and any follow-up message
//! (a retry in a delay queue, a dead letter) is confirmed by the broker.

use common::metric_names as names;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use common::broker::{RETRY_TIERS, Topology, job_properties, publish_confirmed};
use common::job::SendJob;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use uuid::Uuid;

use crate::retry::tier_for;
use crate::send::{JobOutcome, SendContext};

/// Pause before a job whose processing failed for another reason than a database outage
/// goes back to the queue, so a failing job does not turn into a hot redelivery loop.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);
/// A job delivered this many times without an outcome (it crashed or stalled every worker
/// that took it) is dead-lettered by the worker, with its reason, before the broker's own
/// limit would drop it there without one.
const POISON_DELIVERIES: i64 = 5;
/// A consumer session longer than this was a working connection, not a failed attempt.
const SESSION_THAT_LASTED: Duration = Duration::from_secs(60);
/// Longest wait for the broker's confirm of a retry or dead letter.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Consumes until `shutdown`, reconnecting after any connection or channel failure
/// ([`common::reconnect`]). `connected` tells `/readyz` whether a consumer is live.
pub async fn run(ctx: Arc<SendContext>, connected: Arc<AtomicBool>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut delays = common::reconnect::Delays::default();
    while !shutdown.is_cancelled() {
        let began = tokio::time::Instant::now();
        match session(&ctx, &connected, &shutdown).await {
            Ok(()) => break,
            Err(e) => {
                connected.store(false, Ordering::Relaxed);
                // A session that lasted was a success: the next outage starts the delays over.
                if began.elapsed() > SESSION_THAT_LASTED {
                    delays.reset();
                }
                let delay = delays.next_delay();
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = delay.as_millis() as u64,
                    "RabbitMQ session ended; reconnecting"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    connected.store(false, Ordering::Relaxed);
    Ok(())
}

/// Where a worker sends follow-up messages: a confirm-mode channel beside the consumer's.
struct Outbound {
    channel: Channel,
    topology: Topology,
}

/// One connection's life. `Ok` only after a clean shutdown.
async fn session(ctx: &Arc<SendContext>, connected: &AtomicBool, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let config = &ctx.config;
    let conn = common::broker::connect(config.amqp_url.expose(), "verify-worker")
        .await
        .context("Failed to connect to RabbitMQ")?;
    let channel = conn.create_channel().await.context("Failed to open a channel")?;
    config
        .topology
        .declare(&channel)
        .await
        .context("Failed to declare the queues")?;
    let publish = conn
        .create_channel()
        .await
        .context("Failed to open a publishing channel")?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("Failed to enable confirms")?;
    let outbound = Arc::new(Outbound {
        channel: publish,
        topology: config.topology.clone(),
    });
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
                    let (ctx, outbound, shutdown) = (Arc::clone(ctx), Arc::clone(&outbound), shutdown.clone());
                    in_flight.spawn(async move { handle(&ctx, &outbound, delivery, &shutdown).await });
                }
                Some(Err(e)) => break Err(anyhow!(e).context("consumer failed")),
                None => break Err(anyhow!("the broker closed the consumer")),
            },
        }
    };
    connected.store(false, Ordering::Relaxed);
    if ended.is_ok() {
        // Stop taking new jobs, then let in-flight sends finish within the grace period
        // (their in-process waits end at once and go to the delay queues); whatever is still
        // unacked when the connection closes goes back to the queue.
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

/// Runs one delivery to its ack, or back to the queue.
async fn handle(ctx: &SendContext, out: &Outbound, delivery: Delivery, shutdown: &CancellationToken) {
    let in_flight = metrics::gauge!(names::SENDS_IN_FLIGHT);
    in_flight.increment(1.0);
    let _done = scopeguard(move || in_flight.decrement(1.0));
    let finished = match SendJob::from_bytes(&delivery.data) {
        Err(e) => dead_letter(out, &delivery.data, None, &format!("unreadable send job: {e}")).await,
        Ok(job) => match wait_until_due(ctx, out, &job, shutdown).await {
            Ok(true) => run_job(ctx, out, &delivery, job, shutdown).await,
            other => other.map(|_| ()),
        },
    };
    match finished {
        Ok(()) => {
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                // The outcome is committed; a redelivery will find it and skip.
                tracing::warn!(error = %e, "could not ack a finished job");
            }
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "job not finished; returning it to the queue");
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

/// A deferred job that a delay queue gave back before its due time waits for the rest: in
/// the worker when the rest is short (at most `RETRY_INPROCESS_MAX_MS`, or shorter than the
/// shortest tier), else in the delay queue that fits it (then `false`: this delivery is
/// done). Touches no database and holds no lease.
async fn wait_until_due(
    ctx: &SendContext,
    out: &Outbound,
    job: &SendJob,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let Some(left) = job.wait_left(SystemTime::now()) else {
        return Ok(true);
    };
    if left <= ctx.config.retry.in_process_max.max(RETRY_TIERS[0]) {
        tokio::select! {
            _ = tokio::time::sleep(left) => return Ok(true),
            _ = shutdown.cancelled() => {}
        }
    }
    let left = job.wait_left(SystemTime::now()).unwrap_or_default();
    let queue = out.topology.retry_queue(tier_for(left));
    publish_confirmed(
        &out.channel,
        &queue,
        &job.to_bytes(),
        job_properties(job),
        CONFIRM_TIMEOUT,
    )
    .await?;
    tracing::debug!(verification_id = %job.verification_id, queue, left_ms = left.as_millis() as u64, "deferred job not yet due");
    Ok(false)
}

/// Runs a job to its outcome and does what the outcome says. A database outage is waited
/// out with the delivery held (not handed back, which would count as a delivery towards the
/// poison limit), then the job runs again with the same lease token, so it takes back its
/// own lease and asks Twilio about any call whose end it could not record.
async fn run_job(
    ctx: &SendContext,
    out: &Outbound,
    delivery: &Delivery,
    job: SendJob,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let holder = Uuid::new_v4().to_string();
    loop {
        ctx.database.wait_until_up(shutdown).await?;
        let result = if deliveries(delivery) >= POISON_DELIVERIES {
            poison(ctx, out, delivery, &job).await
        } else {
            match ctx.process(&job, &holder, shutdown).await {
                Ok(outcome) => return follow_up(out, job, outcome).await,
                Err(e) => Err(e),
            }
        };
        match result {
            Err(e) if common::db::caused_by_outage(&e) && !shutdown.is_cancelled() => {
                tracing::warn!(error = format!("{e:#}"), verification_id = %job.verification_id,
                    "database unreachable; holding the job until it answers");
                ctx.database.report_down();
            }
            other => return other,
        }
    }
}

/// Does what an outcome says beyond the database (already written): publish the retry or
/// the dead letter. Only then may the delivery be acked.
async fn follow_up(out: &Outbound, mut job: SendJob, outcome: JobOutcome) -> anyhow::Result<()> {
    let id = job.verification_id;
    match outcome {
        JobOutcome::Submitted { sid } => {
            metrics::counter!(names::JOBS, "outcome" => "submitted").increment(1);
            tracing::info!(verification_id = %id, message_sid = %sid, "SMS submitted");
        }
        JobOutcome::Skipped(reason) => {
            metrics::counter!(names::JOBS, "outcome" => "skipped").increment(1);
            tracing::info!(verification_id = %id, reason, "SMS not sent");
        }
        JobOutcome::Failed { twilio_code } => {
            metrics::counter!(names::JOBS, "outcome" => "failed").increment(1);
            tracing::warn!(verification_id = %id, twilio_code, "SMS refused by Twilio");
        }
        JobOutcome::Retry { attempts, delay } => {
            job.attempt = attempts;
            job.due_after(SystemTime::now(), delay);
            let queue = out.topology.retry_queue(tier_for(delay));
            publish_confirmed(
                &out.channel,
                &queue,
                &job.to_bytes(),
                job_properties(&job),
                CONFIRM_TIMEOUT,
            )
            .await?;
            metrics::counter!(names::JOBS, "outcome" => "deferred").increment(1);
            tracing::info!(verification_id = %id, attempts, queue, delay_ms = delay.as_millis() as u64, "send deferred");
        }
        JobOutcome::DeadLetter { reason } => {
            dead_letter(out, &job.to_bytes(), Some(&job), &reason).await?;
        }
    }
    Ok(())
}

/// A job delivered again and again without an outcome: recorded and dead-lettered.
async fn poison(ctx: &SendContext, out: &Outbound, delivery: &Delivery, job: &SendJob) -> anyhow::Result<()> {
    let reason = format!("delivered {} times without an outcome", deliveries(delivery));
    common::repo::mark_dead_lettered(&ctx.pool, job.verification_id, &reason).await?;
    dead_letter(out, &delivery.data, Some(job), &reason).await
}

/// Publishes `payload` to the dead-letter queue with the reason in its headers.
async fn dead_letter(out: &Outbound, payload: &[u8], job: Option<&SendJob>, reason: &str) -> anyhow::Result<()> {
    let mut headers = FieldTable::default();
    headers.insert("x-dead-reason".into(), AMQPValue::LongString(LongString::from(reason)));
    let at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    headers.insert("x-dead-at".into(), AMQPValue::LongString(LongString::from(at.as_str())));
    let properties = match job {
        Some(job) => job_properties(job),
        None => BasicProperties::default().with_delivery_mode(2),
    }
    .with_headers(headers);
    let queue = out.topology.dead_letter_queue();
    publish_confirmed(&out.channel, &queue, payload, properties, CONFIRM_TIMEOUT).await?;
    metrics::counter!(names::DEAD_LETTERS).increment(1);
    tracing::warn!(verification_id = ?job.map(|j| j.verification_id), reason, "job dead-lettered");
    Ok(())
}

/// How often the broker delivered this message before (quorum queues count it).
fn deliveries(delivery: &Delivery) -> i64 {
    let count = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned());
    match count {
        Some(AMQPValue::LongLongInt(n)) => n,
        Some(AMQPValue::LongInt(n)) => n.into(),
        Some(AMQPValue::LongUInt(n)) => n.into(),
        Some(AMQPValue::ShortInt(n)) => n.into(),
        Some(AMQPValue::ShortUInt(n)) => n.into(),
        Some(AMQPValue::ShortShortInt(n)) => n.into(),
        Some(AMQPValue::ShortShortUInt(n)) => n.into(),
        _ => 0,
    }
}

/// Runs `f` when dropped (also when the task is cancelled or panics).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
