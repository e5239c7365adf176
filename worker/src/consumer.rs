//! The consumer loop: connects to RabbitMQ (again, after any failure), declares the
//! topology, consumes with a prefetch of twice `WORKER_CONCURRENCY`, runs each job as its own
//! task (its Twilio call in one of `WORKER_CONCURRENCY` slots), and acks only once the job's
//! outcome is committed in PostgreSQL and any follow-up message (a retry in a delay queue, a
//! dead letter) is confirmed by the broker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use common::broker::{NodeInUse, Nodes};
use common::job::SendJob;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use uuid::Uuid;

use crate::outbound::Outbound;
use crate::send::SendContext;

/// Pause before a job whose processing failed for another reason than a database outage
/// goes back to the queue, so a failing job does not turn into a hot redelivery loop.
pub(crate) const REQUEUE_PAUSE: Duration = Duration::from_secs(1);
/// A job delivered this many times without an outcome (it crashed or stalled every worker
/// that took it) is dead-lettered by the worker, with its reason, before the broker's own
/// limit would drop it there without one.
const POISON_DELIVERIES: i64 = 5;
/// A consumer session longer than this was a working connection, not a failed attempt.
const SESSION_THAT_LASTED: Duration = Duration::from_secs(60);

/// Consumes until `shutdown`, reconnecting after any connection or channel failure
/// ([`common::reconnect`]), each time to the next node of `AMQP_URL`'s list. `connected`
/// tells `/readyz` whether a consumer is live, and through which node.
pub async fn run(ctx: Arc<SendContext>, connected: Arc<NodeInUse>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut delays = common::reconnect::Delays::default();
    let nodes = Nodes::new(ctx.config.shared.amqp_url.expose());
    while !shutdown.is_cancelled() {
        let began = tokio::time::Instant::now();
        match session(&ctx, &nodes, &connected, &shutdown).await {
            Ok(()) => break,
            Err(e) => {
                connected.set(None);
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
    connected.set(None);
    Ok(())
}

/// One connection's life. `Ok` only after a clean shutdown.
async fn session(
    ctx: &Arc<SendContext>,
    nodes: &Nodes,
    connected: &NodeInUse,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let config = &ctx.config;
    let (conn, node) = nodes
        .connect("verify-worker")
        .await
        .context("Failed to connect to RabbitMQ")?;
    let channel = conn.create_channel().await.context("Failed to open a channel")?;
    config
        .shared
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
        topology: config.shared.topology.clone(),
    });
    // Twice the sends in flight (the slots, see `SendContext::slots`): the jobs being
    // recorded and acked after their call, and the next ones, are here already, so a slot
    // that frees up is taken at once instead of one ack and one delivery later.
    channel
        .basic_qos(prefetch(config.concurrency), BasicQosOptions::default())
        .await
        .context("Failed to set the prefetch")?;
    let mut consumer = channel
        .basic_consume(
            config.shared.topology.send_queue().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("Failed to start consuming")?;
    let (events_channel, mut events) = crate::events::consume(ctx, &conn).await?;
    connected.set(Some(node.clone()));
    tracing::info!(
        node = %node,
        queue = config.shared.topology.send_queue(),
        concurrency = config.concurrency,
        prefetch = prefetch(config.concurrency),
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
            next = events.next() => match next {
                Some(Ok(delivery)) => {
                    let (ctx, outbound) = (Arc::clone(ctx), Arc::clone(&outbound));
                    in_flight.spawn(async move { crate::events::handle(&ctx, &outbound.channel, delivery).await });
                }
                Some(Err(e)) => break Err(anyhow!(e).context("event consumer failed")),
                None => break Err(anyhow!("the broker closed the event consumer")),
            },
        }
    };
    connected.set(None);
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
        if let Some((channel, tag)) = &events_channel
            && let Err(e) = channel.basic_cancel(tag.clone(), BasicCancelOptions::default()).await
        {
            tracing::warn!(error = %e, "could not cancel the event consumer");
        }
    }
    in_flight.close();
    if tokio::time::timeout(config.shared.shutdown_grace, in_flight.wait())
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

/// The send queue's prefetch for `concurrency` sends in flight.
fn prefetch(concurrency: u16) -> u16 {
    concurrency.saturating_mul(2)
}

/// Runs one delivery to its ack, or back to the queue.
async fn handle(ctx: &SendContext, out: &Outbound, delivery: Delivery, shutdown: &CancellationToken) {
    let finished = match SendJob::from_bytes(&delivery.data, &ctx.config.shared.sealer) {
        Err(e) => {
            out.dead_letter(&delivery.data, None, &format!("unreadable send job: {e}"))
                .await
        }
        Ok(job) => match out
            .wait_until_due(&job, ctx.config.retry.in_process_max, shutdown)
            .await
        {
            // A job not begun when the worker stops goes back with the connection
            // (redelivered: quorum queues count it towards the poison limit).
            Ok(true) if shutdown.is_cancelled() => return,
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
                Ok(outcome) => return out.follow_up(job, outcome).await,
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

/// A job delivered again and again without an outcome: recorded and dead-lettered.
async fn poison(ctx: &SendContext, out: &Outbound, delivery: &Delivery, job: &SendJob) -> anyhow::Result<()> {
    let reason = format!("delivered {} times without an outcome", deliveries(delivery));
    common::repo::mark_dead_lettered(&ctx.pool, job.verification_id, &reason).await?;
    out.dead_letter(&delivery.data, Some(job), &reason).await
}

/// How often the broker delivered this message before (quorum queues count it).
fn deliveries(delivery: &Delivery) -> i64 {
    header_int(delivery, "x-delivery-count").unwrap_or(0)
}

/// A whole-number header of a message, whatever integer type the broker or publisher used.
pub(crate) fn header_int(delivery: &Delivery, name: &str) -> Option<i64> {
    let value = delivery.properties.headers().as_ref()?.inner().get(name)?.clone();
    match value {
        AMQPValue::LongLongInt(n) => Some(n),
        AMQPValue::LongInt(n) => Some(n.into()),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::ShortInt(n) => Some(n.into()),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::ShortShortInt(n) => Some(n.into()),
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        _ => None,
    }
}
