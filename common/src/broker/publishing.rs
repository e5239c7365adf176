//! Publishing with publisher confirms: the shared [`Publisher`] of send jobs (reconnecting
//! on demand with the [`crate::reconnect`] delays), one confirmed publish, and the send
//! job's message properties.

use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;

use super::connection::Nodes;
use super::inspection::{QueueDepth, queue_depths};
use super::topology::Topology;
use crate::job::SendJob;

/// Publishes send jobs with publisher confirms over one shared connection, reconnecting on
/// demand when the broker went away: during an outage [`Publisher::channel`] fails fast (a
/// start answers 503; unconfirmed jobs stay in the outbox), and connection attempts back off
/// ([`crate::reconnect`]) so that an outage does not turn every request into a connection
/// attempt.
pub struct Publisher {
    nodes: Nodes,
    name: String,
    topology: Topology,
    timeout: Duration,
    link: Mutex<Link>,
}

struct Link {
    current: Option<(Connection, Channel)>,
    /// `host:port` of the node of `current`.
    node: Option<String>,
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
            node: None,
            retry_at: None,
            delays: crate::reconnect::Delays::default(),
        };
        Self {
            nodes: Nodes::new(url),
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
        if link.current.take().is_some() {
            tracing::warn!(
                node = link.node.as_deref().unwrap_or("?"),
                "lost the connection to RabbitMQ"
            );
        }
        link.node = None;
        if let Some(at) = link.retry_at
            && tokio::time::Instant::now() < at
        {
            return Err(anyhow!("RabbitMQ is unreachable; reconnecting"));
        }
        let opened = tokio::time::timeout(self.timeout, self.open())
            .await
            .unwrap_or_else(|_| Err(anyhow!("timed out connecting to RabbitMQ")));
        match opened {
            Ok((conn, channel, node)) => {
                tracing::info!(node = %node, "connected to RabbitMQ");
                link.current = Some((conn, channel.clone()));
                link.node = Some(node);
                link.retry_at = None;
                link.delays.reset();
                Ok(channel)
            }
            Err(e) => {
                let delay = link.delays.next_delay();
                link.retry_at = Some(tokio::time::Instant::now() + delay);
                Err(e)
            }
        }
    }

    async fn open(&self) -> anyhow::Result<(Connection, Channel, String)> {
        let (conn, node) = self
            .nodes
            .connect(&self.name)
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
        Ok((conn, channel, node))
    }

    /// Publishes jobs to the send queue all at once (every message in flight before the
    /// first confirm is awaited, so the broker confirms them together) and returns one
    /// result per job, in order. The whole call takes at most the publish timeout.
    pub async fn publish_all(&self, jobs: &[SendJob]) -> Vec<anyhow::Result<()>> {
        let messages: Vec<(Vec<u8>, BasicProperties)> =
            jobs.iter().map(|job| (job.to_bytes(), job_properties(job))).collect();
        self.publish_batch(self.topology.send_queue(), &messages).await
    }

    /// Publishes messages to `queue` all at once, as [`Publisher::publish_all`] does.
    pub async fn publish_batch(&self, queue: &str, messages: &[(Vec<u8>, BasicProperties)]) -> Vec<anyhow::Result<()>> {
        let channel = match self.channel().await {
            Ok(channel) => channel,
            Err(e) => {
                let text = format!("{e:#}");
                return messages.iter().map(|_| Err(anyhow!(text.clone()))).collect();
            }
        };
        let until = tokio::time::Instant::now() + self.timeout;
        // Every message is handed to lapin before any is awaited: its I/O thread then writes
        // them together, where one at a time cost a hand-off between threads per message.
        let confirms = join_all(
            messages
                .iter()
                .map(|(payload, properties)| send(&channel, queue, payload, properties.clone(), until)),
        )
        .await;
        let mut results = Vec::with_capacity(messages.len());
        for confirm in confirms {
            results.push(match confirm {
                Ok(confirm) => await_confirm(confirm, until).await,
                Err(e) => Err(e),
            });
        }
        results
    }

    /// Whether the broker answers now, and through which node (`/readyz`).
    pub async fn ready_node(&self) -> Option<String> {
        self.channel().await.ok()?;
        self.link.lock().await.node.clone()
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

/// An event's message: persistent JSON, its `webhook-id` as message id.
pub fn event_properties(webhook_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(webhook_id.into())
}

/// Persistent JSON, with the verification id as message id for operators' tools.
pub fn job_properties(job: &SendJob) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(job.verification_id.to_string().as_str().into())
}
