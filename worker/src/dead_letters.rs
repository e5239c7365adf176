//! `verify-worker dead-letters list|replay`: what an operator does with the dead-letter queue.
//!
//! Both read the queue with `basic.get` and hold what they read unacked until the end, so
//! each message is seen once per run; closing the channel puts back what was not replayed.

use std::io::Write;

use anyhow::Context;
use common::broker::{job_properties, publish_confirmed};
use common::job::SendJob;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use sqlx::PgPool;

use crate::config::WorkerConfig;

/// How long an operator's command waits for any one answer from RabbitMQ before it gives up
/// with an error instead of hanging.
const BROKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn broker<T>(what: &str, call: impl Future<Output = lapin::Result<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(BROKER_TIMEOUT, call).await {
        Ok(answer) => answer.with_context(|| format!("Failed to {what}")),
        Err(_) => anyhow::bail!("RabbitMQ did not answer within {} s: {what}", BROKER_TIMEOUT.as_secs()),
    }
}

/// One dead letter as shown to an operator.
pub struct DeadLetter {
    pub verification_id: Option<uuid::Uuid>,
    pub reason: String,
    pub dead_at: String,
}

fn header(delivery: &Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn describe(delivery: &Delivery) -> DeadLetter {
    DeadLetter {
        verification_id: SendJob::peek_verification_id(&delivery.data),
        // Without our header it was dead-lettered by the broker (its delivery limit).
        reason: header(delivery, "x-dead-reason").unwrap_or_else(|| "dead-lettered by the broker".into()),
        dead_at: header(delivery, "x-dead-at").unwrap_or_else(|| "?".into()),
    }
}

/// What `replay` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub replayed: usize,
    /// Left in the queue: verification no longer pending or expired, or the message unreadable.
    pub kept: usize,
}

/// Prints every dead letter (verification, time, reason) and leaves the queue as it was.
pub async fn list(config: &WorkerConfig, out: &mut impl Write) -> anyhow::Result<usize> {
    let conn = common::broker::connect(config.shared.amqp_url.expose(), "verify-worker dead-letters").await?;
    let channel = broker("open a channel", conn.create_channel()).await?;
    broker("declare the queues", config.shared.topology.declare(&channel)).await?;
    let queue = config.shared.topology.dead_letter_queue();
    let mut seen = 0;
    while let Some(message) = broker(
        "get a dead letter",
        channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }),
    )
    .await?
    {
        let d = describe(&message.delivery);
        seen += 1;
        let id = d
            .verification_id
            .map_or_else(|| "(unreadable)".to_owned(), |id| id.to_string());
        writeln!(out, "{seen:>6}  {id:<36}  {:<30}  {}", d.dead_at, d.reason)?;
    }
    writeln!(out, "{seen} dead letter(s) in {queue}")?;
    // Closing returns every message read to the queue.
    broker("close the connection", conn.close(200, "listed".into())).await?;
    Ok(seen)
}

/// Puts back into the send queue every dead letter whose verification is still pending and
/// unexpired (its delivery becomes `queued` again, with a fresh attempt budget); leaves the
/// others. Prints a line per message and a summary.
pub async fn replay(config: &WorkerConfig, pool: &PgPool, out: &mut impl Write) -> anyhow::Result<ReplaySummary> {
    let conn = common::broker::connect(config.shared.amqp_url.expose(), "verify-worker dead-letters").await?;
    let channel = broker("open a channel", conn.create_channel()).await?;
    broker("declare the queues", config.shared.topology.declare(&channel)).await?;
    let publish = broker("open a channel", conn.create_channel()).await?;
    broker(
        "switch on publisher confirms",
        publish.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?;
    let queue = config.shared.topology.dead_letter_queue();
    let mut summary = ReplaySummary::default();
    while let Some(message) = broker(
        "get a dead letter",
        channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }),
    )
    .await?
    {
        let delivery = message.delivery;
        let Ok(mut job) = SendJob::from_bytes(&delivery.data, &config.shared.sealer) else {
            summary.kept += 1;
            writeln!(out, "kept      (unreadable message)")?;
            continue;
        };
        let id = job.verification_id;
        if !common::repo::reset_for_replay(pool, id)
            .await
            .context("Failed to reset the verification")?
        {
            summary.kept += 1;
            writeln!(out, "kept      {id}  (no longer pending, expired, or already sent)")?;
            continue;
        }
        job.attempt = 0;
        let timeout = std::time::Duration::from_secs(10);
        publish_confirmed(
            &publish,
            config.shared.topology.send_queue(),
            &job.to_bytes(),
            job_properties(&job),
            timeout,
        )
        .await?;
        broker("ack the dead letter", delivery.ack(BasicAckOptions::default())).await?;
        summary.replayed += 1;
        writeln!(out, "replayed  {id}  ({} left)", message.message_count)?;
    }
    writeln!(out, "replayed {}, kept {} in {queue}", summary.replayed, summary.kept)?;
    broker("close the connection", conn.close(200, "replayed".into())).await?;
    Ok(summary)
}
