//! `verify-worker dead-letters list|replay [--events]`: what an operator does with the
//! dead-letter queues of send jobs (`{SEND_QUEUE}.dead`) and of events
//! (`{SEND_QUEUE}.events.dead`).
//!
//! Both read the queue with `basic.get` and hold what they read unacked until the end, so
//! each message is seen once per run; closing the channel puts back what was not replayed.

use std::io::Write;

use anyhow::Context;
use common::broker::{event_properties, job_properties, publish_confirmed};
use common::job::SendJob;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use lapin::{Channel, Connection};
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

/// A connection, and a channel on which the topology is declared.
async fn open(config: &WorkerConfig) -> anyhow::Result<(Connection, Channel)> {
    let conn = common::broker::connect(config.shared.amqp_url.expose(), "verify-worker dead-letters").await?;
    let channel = broker("open a channel", conn.create_channel()).await?;
    broker("declare the queues", config.shared.topology.declare(&channel)).await?;
    Ok((conn, channel))
}

/// Another channel of `conn`, with publisher confirms on.
async fn confirming(conn: &Connection) -> anyhow::Result<Channel> {
    let publish = broker("open a channel", conn.create_channel()).await?;
    broker(
        "switch on publisher confirms",
        publish.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?;
    Ok(publish)
}

/// The next message of `queue`, held unacked (closing the channel puts it back); `None` once
/// every message was read.
async fn next_message(channel: &Channel, queue: &str, what: &str) -> anyhow::Result<Option<BasicGetMessage>> {
    broker(what, channel.basic_get(queue.into(), BasicGetOptions { no_ack: false })).await
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
    let (conn, channel) = open(config).await?;
    let queue = config.shared.topology.dead_letter_queue();
    let mut seen = 0;
    while let Some(message) = next_message(&channel, &queue, "get a dead letter").await? {
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
    let (conn, channel) = open(config).await?;
    let publish = confirming(&conn).await?;
    let queue = config.shared.topology.dead_letter_queue();
    let mut summary = ReplaySummary::default();
    while let Some(message) = next_message(&channel, &queue, "get a dead letter").await? {
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

/// A dead event as shown to an operator: its `webhook-id` and type, when it is readable.
fn describe_event(delivery: &Delivery) -> (Option<String>, Option<String>) {
    let id = delivery.properties.message_id().as_ref().map(|id| id.to_string());
    let kind = serde_json::from_slice::<serde_json::Value>(&delivery.data)
        .ok()
        .and_then(|body| body.get("type")?.as_str().map(str::to_owned));
    (id, kind)
}

/// A connection and a channel on which the topology (with the events queues) is declared;
/// an error when events are off, for then there is no events dead-letter queue.
async fn events_channel(config: &WorkerConfig) -> anyhow::Result<(Connection, Channel)> {
    anyhow::ensure!(
        config.shared.events.enabled(),
        "event webhooks are off (EVENTS_URL and EVENTS_SECRET unset): there is no events dead-letter queue"
    );
    open(config).await
}

/// Prints every dead event (`webhook-id`, type, time, reason) and leaves the queue as it was.
pub async fn list_events(config: &WorkerConfig, out: &mut impl Write) -> anyhow::Result<usize> {
    let (conn, channel) = events_channel(config).await?;
    let queue = config.shared.topology.events_dead_queue();
    let mut seen = 0;
    while let Some(message) = next_message(&channel, &queue, "get a dead event").await? {
        let d = describe(&message.delivery);
        let (id, kind) = describe_event(&message.delivery);
        seen += 1;
        let id = id.unwrap_or_else(|| "(no webhook-id)".into());
        let kind = kind.unwrap_or_else(|| "(unreadable)".into());
        writeln!(out, "{seen:>6}  {id:<36}  {kind:<36}  {:<30}  {}", d.dead_at, d.reason)?;
    }
    writeln!(out, "{seen} dead event(s) in {queue}")?;
    broker("close the connection", conn.close(200, "listed".into())).await?;
    Ok(seen)
}

/// Puts every readable dead event back into the events queue, with its `webhook-id` and a
/// fresh retry schedule (a receiver that was down longer than the schedule gets what it
/// missed, and can tell a repeat by the id); leaves those without a `webhook-id` or a
/// readable body. Prints a line per message and a summary.
pub async fn replay_events(config: &WorkerConfig, out: &mut impl Write) -> anyhow::Result<ReplaySummary> {
    let (conn, channel) = events_channel(config).await?;
    let publish = confirming(&conn).await?;
    let (queue, events_queue) = (
        config.shared.topology.events_dead_queue(),
        config.shared.topology.events_queue(),
    );
    let mut summary = ReplaySummary::default();
    while let Some(message) = next_message(&channel, &queue, "get a dead event").await? {
        let delivery = message.delivery;
        let (Some(id), Some(kind)) = describe_event(&delivery) else {
            summary.kept += 1;
            writeln!(out, "kept      (no webhook-id, or a body that is not an event)")?;
            continue;
        };
        publish_confirmed(
            &publish,
            &events_queue,
            &delivery.data,
            event_properties(&id),
            std::time::Duration::from_secs(10),
        )
        .await?;
        broker("ack the dead event", delivery.ack(BasicAckOptions::default())).await?;
        summary.replayed += 1;
        writeln!(out, "replayed  {id}  {kind}  ({} left)", message.message_count)?;
    }
    writeln!(out, "replayed {}, kept {} in {queue}", summary.replayed, summary.kept)?;
    broker("close the connection", conn.close(200, "replayed".into())).await?;
    Ok(summary)
}
