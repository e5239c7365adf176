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

    /// Every queue of the topology, for operators' views.
    pub fn queues(&self) -> Vec<String> {
        vec![self.send_queue.clone(), self.dead_letter_queue()]
    }

    /// Declares the topology; idempotent, so every process does it after every (re)connect.
    ///
    /// Both queues are durable quorum queues (replicated, and able to count redeliveries).
    /// A message the worker rejects (it cannot be parsed) is dead-lettered through the
    /// default exchange into the dead-letter queue instead of going back to the head of
    /// the send queue.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .queue_declare(
                self.dead_letter_queue().as_str().into(),
                QueueDeclareOptions::durable(),
                quorum_arguments(),
            )
            .await?;
        let mut send_args = quorum_arguments();
        send_args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        send_args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.dead_letter_queue().as_str().into()),
        );
        channel
            .queue_declare(
                self.send_queue.as_str().into(),
                QueueDeclareOptions::durable(),
                send_args,
            )
            .await?;
        Ok(())
    }
}

fn quorum_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// Opens one connection (each costs an OS thread in lapin: one per process is the rule).
pub async fn connect(url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let props =
        ConnectionProperties::default().with_connection_name(LongString::from(connection_name));
    Connection::connect(url, props).await
}

/// Depth of one queue, as a passive declare reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueDepth {
    pub name: String,
    pub messages_ready: u32,
    pub consumers: u32,
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
/// demand when the broker went away (a failed publish is reported; the next one reconnects).
pub struct Publisher {
    url: String,
    name: String,
    topology: Topology,
    timeout: Duration,
    link: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    /// `timeout` bounds every connect and every publish-until-confirm, so callers answer
    /// quickly during an outage instead of hanging.
    pub fn new(url: &str, name: &str, topology: Topology, timeout: Duration) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            topology,
            timeout,
            link: Mutex::new(None),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A confirm-mode channel on a live connection, connecting (and declaring the topology)
    /// if there is none.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let mut link = self.link.lock().await;
        if let Some((conn, channel)) = link.as_ref()
            && conn.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        *link = None;
        let fresh = tokio::time::timeout(self.timeout, self.open())
            .await
            .map_err(|_| anyhow!("timed out connecting to RabbitMQ"))??;
        let channel = fresh.1.clone();
        *link = Some(fresh);
        Ok(channel)
    }

    async fn open(&self) -> anyhow::Result<(Connection, Channel)> {
        let conn = connect(&self.url, &self.name)
            .await
            .context("Failed to connect to RabbitMQ")?;
        let channel = conn
            .create_channel()
            .await
            .context("Failed to open a channel")?;
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

    /// Publishes a persistent job to the send queue and waits for the broker's confirm.
    /// Returns only once the broker has taken responsibility for the message.
    pub async fn publish(&self, job: &SendJob) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        let payload = job.to_bytes();
        let confirm = tokio::time::timeout(self.timeout, async {
            channel
                .basic_publish(
                    "".into(),
                    self.topology.send_queue().into(),
                    // mandatory: a message no queue would take comes back instead of vanishing.
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &payload,
                    job_properties(job),
                )
                .await?
                .await
        })
        .await
        .map_err(|_| anyhow!("timed out waiting for the broker's confirm"))?
        .context("Failed to publish the send job")?;
        if !confirm.is_ack() {
            return Err(anyhow!("the broker refused the send job (nack)"));
        }
        if confirm.take_message().is_some() {
            return Err(anyhow!("the send job was returned as unroutable"));
        }
        Ok(())
    }

    /// Whether the broker answers now (used by `/readyz`).
    pub async fn is_ready(&self) -> bool {
        self.channel().await.is_ok()
    }

    /// Depth of every queue of the topology.
    pub async fn queue_depths(&self) -> anyhow::Result<Vec<QueueDepth>> {
        let channel = self.channel().await?;
        tokio::time::timeout(
            self.timeout,
            queue_depths(&channel, &self.topology.queues()),
        )
        .await
        .map_err(|_| anyhow!("timed out reading queue depths"))?
        .context("Failed to read queue depths")
    }
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
        assert_eq!(
            t.queues(),
            vec!["sms.send".to_string(), "sms.send.dead".to_string()]
        );
    }

    #[test]
    fn unusable_queue_names_are_refused() {
        for bad in ["", "amq.sms", "has space", &"x".repeat(201)] {
            assert!(Topology::new(bad).is_err(), "{bad:?}");
        }
    }
}
