//! The events queue on a worker's connection: its consumer, and each delivery to its ack.

use anyhow::Context;
use common::broker::event_pack;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;

use crate::consumer::REQUEUE_PAUSE;
use crate::send::SendContext;

/// The events queue's deliveries, on a channel of their own with their own prefetch; a stream
/// that never yields when events are off.
pub(crate) async fn consume(
    ctx: &SendContext,
    conn: &lapin::Connection,
) -> anyhow::Result<(Option<(lapin::Channel, lapin::types::ShortString)>, EventStream)> {
    if ctx.events.is_none() {
        return Ok((None, Box::pin(futures_util::stream::pending())));
    }
    let queue = ctx.config.shared.topology.events_queue();
    let channel = conn
        .create_channel()
        .await
        .context("Failed to open the events channel")?;
    channel
        .basic_qos(ctx.config.events_concurrency, BasicQosOptions::default())
        .await
        .context("Failed to set the events prefetch")?;
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("Failed to consume the events queue")?;
    tracing::info!(queue, prefetch = ctx.config.events_concurrency, "delivering events");
    let tag = consumer.tag();
    Ok((Some((channel, tag)), Box::pin(consumer)))
}

pub(crate) type EventStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Delivery, lapin::Error>> + Send>>;

/// Delivers one event or a pack of them, then acks the message; hands it back if what follows
/// a failed try (a retry or a dead letter) could not be published.
pub(crate) async fn handle(ctx: &SendContext, publish: &lapin::Channel, delivery: Delivery) {
    let Some(events) = ctx.events.as_ref() else {
        return;
    };
    let settled = if event_pack::is_pack(&delivery.properties) {
        events.deliver_pack(publish, &delivery).await
    } else {
        events.deliver(publish, &delivery).await.map(drop)
    };
    match settled {
        Ok(()) => {
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                tracing::warn!(error = %e, "could not ack an event");
            }
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "event not settled; returning it to the queue");
            tokio::time::sleep(REQUEUE_PAUSE).await;
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            if let Err(e) = delivery.nack(requeue).await {
                tracing::warn!(error = %e, "could not requeue an event");
            }
        }
    }
}
