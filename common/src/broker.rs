//! RabbitMQ: the queue topology, connections, and a publisher that waits for the broker's
//! confirm and reconnects on demand.

use std::time::Duration;

use anyhow::{Context, anyhow};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::job::SendJob;

/// The delay tiers of the retry queues (`{send queue}.retry.{N}s`). One queue per tier, each
/// with one TTL, so a short delay never waits behind a long one.
pub const RETRY_TIERS: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(100),
    Duration::from_secs(300),
];

/// Deliveries after which the broker itself dead-letters a message of the send queue: the
/// last line of defence against a job that crashes every worker that takes it (the worker
/// dead-letters such a job itself, with its reason, well before this).
pub const DELIVERY_LIMIT: i64 = 20;

/// The queues of one deployment, all named after the send queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    send_queue: String,
}

impl Topology {
    /// `send_queue` must be a valid AMQP queue name (at most 200 bytes, so that derived
    /// names stay under AMQP's 255-byte limit).
    pub fn new(send_queue: &str) -> Result<Self, String> {
        let ok = !send_queue.is_empty()
            && send_queue.len() <= 200
            && !send_queue.starts_with("amq.")
            && send_queue
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c));
        if ok {
            Ok(Self {
                send_queue: send_queue.to_owned(),
            })
        } else {
            Err("must be 1 to 200 characters of letters, digits, '.', '_', '-' or ':', not starting with 'amq.'".into())
        }
    }

    pub fn send_queue(&self) -> &str {
        &self.send_queue
    }

    /// Where messages that cannot be processed end up, with the reason.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.send_queue)
    }

    /// The delay queue of a tier of [`RETRY_TIERS`].
    pub fn retry_queue(&self, tier: Duration) -> String {
        format!("{}.retry.{}s", self.send_queue, tier.as_secs())
    }

    /// Every queue of the topology, for operators' views: send, retry tiers, dead letters.
    pub fn queues(&self) -> Vec<String> {
        let mut queues = vec![self.send_queue.clone()];
        queues.extend(RETRY_TIERS.iter().map(|t| self.retry_queue(*t)));
        queues.push(self.dead_letter_queue());
        queues
    }

    /// Declares the topology; idempotent, so every process does it after every (re)connect.
    ///
    /// All queues are durable quorum queues (replicated, and able to count redeliveries).
    /// A message of the send queue that the broker dead-letters (delivered
    /// [`DELIVERY_LIMIT`] times) goes to the dead-letter queue instead of back to the head
    /// of the send queue. Each retry queue holds messages for its tier's TTL, then
    /// dead-letters them back into the send queue.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = QueueDeclareOptions::durable();
        let dead = self.dead_letter_queue();
        channel
            .queue_declare(dead.as_str().into(), durable, quorum_arguments())
            .await?;
        let mut send_args = quorum_arguments();
        send_args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
        dead_letter_to(&mut send_args, &dead);
        channel
            .queue_declare(self.send_queue.as_str().into(), durable, send_args)
            .await?;
        for tier in RETRY_TIERS {
            let mut args = quorum_arguments();
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(tier.as_millis() as i64));
            dead_letter_to(&mut args, &self.send_queue);
            channel
                .queue_declare(self.retry_queue(tier).as_str().into(), durable, args)
                .await?;
        }
        Ok(())
    }
}

/// Dead-letters through the default exchange straight into `queue`.
fn dead_letter_to(args: &mut FieldTable, queue: &str) {
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(queue.into()));
}

fn quorum_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    args
}

/// Opens one connection (each costs an OS thread in lapin: one per process is the rule).
pub async fn connect(url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(connection_name));
    Connection::connect(url, props).await
}

/// Depth of one queue, as a passive declare reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QueueDepth {
    pub name: String,
    pub messages_ready: u32,
    pub consumers: u32,
}

/// One queue as `GET /v1/ops/queues` and `verify-worker stats` show it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct QueueView {
    #[schema(example = "sms.send")]
    pub name: String,
    pub messages_ready: u32,
    pub consumers: u32,
    /// Seconds the oldest send waiting here has waited (from PostgreSQL); null when none waits.
    pub oldest_queued_age_seconds: Option<f64>,
}

/// Depths from the broker joined with waiting ages from the database
/// ([`crate::repo::oldest_waiting`]).
pub fn join_ages(depths: Vec<QueueDepth>, ages: &[(String, f64)]) -> Vec<QueueView> {
    depths
        .into_iter()
        .map(|d| {
            let oldest = ages.iter().find(|(q, _)| *q == d.name).map(|(_, age)| *age);
            QueueView {
                name: d.name,
                messages_ready: d.messages_ready,
                consumers: d.consumers,
                oldest_queued_age_seconds: oldest,
            }
        })
        .collect()
}

/// Reads the depth of each queue without creating any (passive declare).
pub async fn queue_depths(channel: &Channel, names: &[String]) -> lapin::Result<Vec<QueueDepth>> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let q = channel
            .queue_declare(
                ShortString::from(name.as_str()),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await?;
        out.push(QueueDepth {
            name: name.clone(),
            messages_ready: q.message_count(),
            consumers: q.consumer_count(),
        });
    }
    Ok(out)
}

/// Publishes send jobs with publisher confirms over one shared connection, reconnecting on
/// demand when the broker went away: during an outage [`Publisher::channel`] fails fast (a
/// start answers 503; unconfirmed jobs stay in the outbox), and connection attempts back off
/// ([`crate::reconnect`]) so that an outage does not turn every request into a connection
/// attempt.
pub struct Publisher {
    url: String,
    name: String,
    topology: Topology,
    timeout: Duration,
    link: Mutex<Link>,
}

struct Link {
    current: Option<(Connection, Channel)>,
    /// No new connection attempt before this.
    retry_at: Option<tokio::time::Instant>,
    delays: crate::reconnect::Delays,
}

impl Publisher {
    /// `timeout` bounds every connect and every publish-until-confirm, so callers answer
    /// quickly during an outage instead of hanging.
    pub fn new(url: &str, name: &str, topology: Topology, timeout: Duration) -> Self {
        let link = Link {
            current: None,
            retry_at: None,
            delays: crate::reconnect::Delays::default(),
        };
        Self {
            url: url.into(),
            name: name.into(),
            topology,
            timeout,
            link: Mutex::new(link),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A confirm-mode channel on a live connection, connecting (and declaring the topology)
    /// if there is none and the backoff allows.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let mut link = self.link.lock().await;
        if let Some((conn, channel)) = link.current.as_ref()
            && conn.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        link.current = None;
        if let Some(at) = link.retry_at
            && tokio::time::Instant::now() < at
        {
            return Err(anyhow!("RabbitMQ is unreachable; reconnecting"));
        }
        let opened = tokio::time::timeout(self.timeout, self.open())
            .await
            .unwrap_or_else(|_| Err(anyhow!("timed out connecting to RabbitMQ")));
        match opened {
            Ok(fresh) => {
                let channel = fresh.1.clone();
                link.current = Some(fresh);
                link.retry_at = None;
                link.delays.reset();
                tracing::info!("connected to RabbitMQ");
                Ok(channel)
            }
            Err(e) => {
                let delay = link.delays.next_delay();
                link.retry_at = Some(tokio::time::Instant::now() + delay);
                Err(e)
            }
        }
    }

    async fn open(&self) -> anyhow::Result<(Connection, Channel)> {
        let conn = connect(&self.url, &self.name)
            .await
            .context("Failed to connect to RabbitMQ")?;
        let channel = conn.create_channel().await.context("Failed to open a channel")?;
        self.topology
            .declare(&channel)
            .await
            .context("Failed to declare the queues")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("Failed to enable publisher confirms")?;
        Ok((conn, channel))
    }

    /// Publishes jobs to the send queue all at once (every message in flight before the
    /// first confirm is awaited, so the broker confirms them together) and returns one
    /// result per job, in order. The whole call takes at most the publish timeout.
    pub async fn publish_all(&self, jobs: &[SendJob]) -> Vec<anyhow::Result<()>> {
        let channel = match self.channel().await {
            Ok(channel) => channel,
            Err(e) => {
                let text = format!("{e:#}");
                return jobs.iter().map(|_| Err(anyhow!(text.clone()))).collect();
            }
        };
        let until = tokio::time::Instant::now() + self.timeout;
        let queue = self.topology.send_queue();
        let mut confirms = Vec::with_capacity(jobs.len());
        for job in jobs {
            confirms.push(send(&channel, queue, &job.to_bytes(), job_properties(job), until).await);
        }
        let mut results = Vec::with_capacity(jobs.len());
        for confirm in confirms {
            results.push(match confirm {
                Ok(confirm) => await_confirm(confirm, until).await,
                Err(e) => Err(e),
            });
        }
        results
    }

    /// Whether the broker answers now (used by `/readyz`).
    pub async fn is_ready(&self) -> bool {
        self.channel().await.is_ok()
    }

    /// Depth of every queue of the topology.
    pub async fn queue_depths(&self) -> anyhow::Result<Vec<QueueDepth>> {
        let channel = self.channel().await?;
        tokio::time::timeout(self.timeout, queue_depths(&channel, &self.topology.queues()))
            .await
            .map_err(|_| anyhow!("timed out reading queue depths"))?
            .context("Failed to read queue depths")
    }
}

/// Publishes to `queue` through the default exchange on a confirm-mode channel and waits
/// (at most `timeout`) for the broker's confirm. `mandatory`: a message no queue would take
/// comes back as an error instead of vanishing.
pub async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    payload: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + timeout;
    let confirm = send(channel, queue, payload, properties, until).await?;
    await_confirm(confirm, until).await
}

/// Hands one mandatory message to the channel; the returned future resolves with the
/// broker's confirm.
async fn send(
    channel: &Channel,
    queue: &str,
    payload: &[u8],
    properties: BasicProperties,
    until: tokio::time::Instant,
) -> anyhow::Result<lapin::PublisherConfirm> {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    tokio::time::timeout_at(
        until,
        channel.basic_publish("".into(), queue.into(), options, payload, properties),
    )
    .await
    .map_err(|_| anyhow!("timed out handing the message to the broker"))?
    .context("Failed to publish")
}

async fn await_confirm(confirm: lapin::PublisherConfirm, until: tokio::time::Instant) -> anyhow::Result<()> {
    let confirm = tokio::time::timeout_at(until, confirm)
        .await
        .map_err(|_| anyhow!("timed out waiting for the broker's confirm"))?
        .context("Failed to publish")?;
    if !confirm.is_ack() {
        return Err(anyhow!("the broker refused the message (nack)"));
    }
    if confirm.take_message().is_some() {
        return Err(anyhow!("the message was returned as unroutable"));
    }
    Ok(())
}

/// Persistent JSON, with the verification id as message id for operators' tools.
pub fn job_properties(job: &SendJob) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(job.verification_id.to_string().as_str().into())
}

#[cfg(test)]
mod tests {
    use super::Topology;

    #[test]
    fn queue_names_derive_from_the_send_queue() {
        let t = Topology::new("sms.send").unwrap();
        assert_eq!(t.dead_letter_queue(), "sms.send.dead");
        assert_eq!(t.retry_queue(std::time::Duration::from_secs(30)), "sms.send.retry.30s");
        let queues = t.queues();
        assert_eq!(queues.first().map(String::as_str), Some("sms.send"));
        assert_eq!(queues.last().map(String::as_str), Some("sms.send.dead"));
        assert_eq!(queues.len(), 2 + super::RETRY_TIERS.len());
    }

    #[test]
    fn unusable_queue_names_are_refused() {
        for bad in ["", "amq.sms", "has space", &"x".repeat(201)] {
            assert!(Topology::new(bad).is_err(), "{bad:?}");
        }
    }
}
