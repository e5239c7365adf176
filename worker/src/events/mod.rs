//! Event webhooks, the workers' part: each event of the events queue is POSTed to
//! `EVENTS_URL`, signed as Standard Webhooks defines it (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), at least once. A try that gets no 2xx in time goes to the delay
//! queue of the next delay of `EVENTS_RETRY_SCHEDULE` (the message carries how many tries it
//! had), so no worker holds it meanwhile and a restart loses nothing; after the last delay it
//! is dead-lettered with the reason. Every try has the same `webhook-id` (the message id the
//! relay gave it) and a fresh timestamp and signature.

mod consume;

pub(crate) use consume::{consume, handle};

use std::time::{Duration, Instant, SystemTime};

use anyhow::anyhow;
use common::broker::{Topology, event_pack, event_properties, publish_confirmed};
use common::metric_names as names;
use common::settings::EventSettings;
use common::standard_webhooks::EventSecret;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};

/// How many tries an event had before this delivery (absent on the first).
const TRIES_HEADER: &str = "x-event-tries";
/// The last failure, on messages in a delay queue (for operators).
const LAST_ERROR_HEADER: &str = "x-event-last-error";
/// Longest wait for the broker's confirm of a retry or dead letter.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers events to the receiver.
pub struct EventSender {
    http: reqwest::Client,
    url: String,
    secret: EventSecret,
    schedule: common::settings::Schedule,
    topology: Topology,
    /// EVENTS_CONCURRENCY permits, one per POST under way.
    posts: tokio::sync::Semaphore,
}

/// What one try of an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The receiver answered 2xx.
    Yes,
    /// In the delay queue for this long.
    Retry(Duration),
    /// Every try failed: dead-lettered with this reason.
    Dead(String),
}

impl EventSender {
    /// `None` when events are off.
    pub fn new(
        settings: &EventSettings,
        topology: &Topology,
        timeout: Duration,
        concurrency: u16,
    ) -> anyhow::Result<Option<Self>> {
        let (Some(url), Some(secret)) = (&settings.url, &settings.secret) else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect is an answer that is not 2xx: the event is retried, not re-posted elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("verify-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Some(Self {
            http,
            url: url.clone(),
            secret: secret.clone(),
            schedule: settings.retry_schedule.clone(),
            topology: topology.clone(),
            posts: tokio::sync::Semaphore::new(usize::from(concurrency)),
        }))
    }

    /// Tries one delivery of the events queue that holds one event, then publishes what
    /// follows a failed try (to a delay queue or the dead letters, confirmed): once this
    /// returns `Ok` the delivery may be acked. `Err`: the follow-up could not be published;
    /// hand the delivery back.
    pub async fn deliver(&self, publish: &Channel, delivery: &Delivery) -> anyhow::Result<Delivered> {
        let event = Event {
            id: delivery.properties.message_id().as_ref().map(|id| id.as_str()),
            body: &delivery.data,
            properties: delivery.properties.clone(),
            tries: tries(delivery),
        };
        self.deliver_event(publish, event).await
    }

    /// Tries every event of a pack ([`event_pack`]) at once, each as [`Self::deliver`] does
    /// (a failed one goes alone to its delay queue); `Ok` once every event is settled, so the
    /// pack may be acked. `Err`: some follow-up could not be published; hand the pack back
    /// (its delivered events are POSTed again, with the same `webhook-id`s). A pack that
    /// cannot be read is dead-lettered whole.
    pub async fn deliver_pack(&self, publish: &Channel, delivery: &Delivery) -> anyhow::Result<()> {
        let events = match event_pack::unpack(&delivery.data) {
            Ok(events) => events,
            Err(e) => {
                let reason = format!("the event pack could not be read: {e}");
                self.dead_letter(publish, &delivery.data, &delivery.properties, &reason)
                    .await?;
                metrics::counter!(names::EVENT_DELIVERIES, "type" => "unknown", "outcome" => "dead_lettered")
                    .increment(1);
                return Ok(());
            }
        };
        let tries = events.iter().map(|packed| {
            self.deliver_event(
                publish,
                Event {
                    id: Some(packed.id),
                    body: packed.event.get().as_bytes(),
                    properties: event_properties(packed.id),
                    tries: 0,
                },
            )
        });
        let settled: anyhow::Result<Vec<Delivered>> = futures_util::future::join_all(tries).await.into_iter().collect();
        settled.map(drop)
    }

    /// Tries one event, then publishes what follows a failed try.
    async fn deliver_event(&self, publish: &Channel, event: Event<'_>) -> anyhow::Result<Delivered> {
        let kind = event_type(event.body);
        let Some(id) = event.id else {
            let reason = "the message has no message id (webhook-id)".to_owned();
            self.dead_letter(publish, event.body, &event.properties, &reason)
                .await?;
            return Ok(Delivered::Dead(reason));
        };
        // Held until the answer is read: at most EVENTS_CONCURRENCY POSTs at once, packs or not.
        let permit = self.posts.acquire().await?;
        let began = Instant::now();
        let result = self.post(id, event.body).await;
        metrics::histogram!(names::EVENT_DELIVERY_DURATION).record(began.elapsed().as_secs_f64());
        drop(permit);
        let failure = match result {
            Ok(()) => {
                metrics::counter!(names::EVENT_DELIVERIES, "type" => kind, "outcome" => "delivered").increment(1);
                tracing::debug!(webhook_id = id, "event delivered");
                return Ok(Delivered::Yes);
            }
            Err(failure) => failure,
        };
        match self.schedule.0.get(event.tries as usize) {
            Some(&delay) => {
                let mut headers = FieldTable::default();
                headers.insert(TRIES_HEADER.into(), AMQPValue::LongLongInt(i64::from(event.tries) + 1));
                headers.insert(
                    LAST_ERROR_HEADER.into(),
                    AMQPValue::LongString(LongString::from(failure.as_str())),
                );
                let properties = event.properties.with_headers(headers);
                let queue = self.topology.events_retry_queue(delay);
                publish_confirmed(publish, &queue, event.body, properties, CONFIRM_TIMEOUT).await?;
                metrics::counter!(names::EVENT_DELIVERIES, "type" => kind, "outcome" => "retried").increment(1);
                tracing::info!(
                    webhook_id = id,
                    error = failure,
                    retry_in_s = delay.as_secs(),
                    "event not delivered; retrying later"
                );
                Ok(Delivered::Retry(delay))
            }
            None => {
                let reason = format!(
                    "{failure} (last of {} tries over {}s)",
                    event.tries + 1,
                    self.schedule.total().as_secs()
                );
                self.dead_letter(publish, event.body, &event.properties, &reason)
                    .await?;
                metrics::counter!(names::EVENT_DELIVERIES, "type" => kind, "outcome" => "dead_lettered").increment(1);
                Ok(Delivered::Dead(reason))
            }
        }
    }

    /// One signed POST; `Err` says why it does not count as delivered.
    async fn post(&self, id: &str, body: &[u8]) -> Result<(), String> {
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let answer = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", self.secret.sign(id, timestamp, body))
            .body(body.to_vec())
            .send()
            .await;
        match answer {
            Ok(answer) => {
                let status = answer.status();
                // Read to the end, so the connection is kept for the next event.
                let _ = answer.bytes().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the receiver answered {}", status.as_u16()))
                }
            }
            Err(e) if e.is_timeout() => Err("no answer within EVENTS_TIMEOUT_MS".into()),
            Err(e) => Err(format!("could not reach the receiver: {}", root_cause(&e))),
        }
    }

    /// Publishes an event (or a pack that cannot be read) to the events dead-letter queue
    /// with the reason.
    async fn dead_letter(
        &self,
        publish: &Channel,
        body: &[u8],
        properties: &BasicProperties,
        reason: &str,
    ) -> anyhow::Result<()> {
        let mut headers = FieldTable::default();
        headers.insert("x-dead-reason".into(), AMQPValue::LongString(LongString::from(reason)));
        let at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
        headers.insert("x-dead-at".into(), AMQPValue::LongString(LongString::from(at.as_str())));
        let properties = properties.clone().with_headers(headers);
        let queue = self.topology.events_dead_queue();
        let webhook_id = properties.message_id().clone();
        publish_confirmed(publish, &queue, body, properties, CONFIRM_TIMEOUT)
            .await
            .map_err(|e| anyhow!(e).context("Failed to dead-letter an event"))?;
        tracing::warn!(webhook_id = ?webhook_id, reason, "event dead-lettered");
        Ok(())
    }
}

/// One event to try: its `webhook-id`, its body, the properties its retry or dead letter
/// carries, and how many tries it had before.
struct Event<'a> {
    id: Option<&'a str>,
    body: &'a [u8],
    properties: BasicProperties,
    tries: u32,
}

/// The tries an event had before this delivery.
fn tries(delivery: &Delivery) -> u32 {
    crate::consumer::header_int(delivery, TRIES_HEADER).map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// The event's type for metrics: one of the known types, else `unknown` (a bounded label).
fn event_type(body: &[u8]) -> &'static str {
    const TYPES: [&str; 6] = [
        "verification.approved",
        "verification.failed",
        "verification.expired",
        "verification.max_attempts_reached",
        "verification.canceled",
        "delivery.updated",
    ];
    // Only the type is read; the rest of the body is skipped, not built.
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    let kind = serde_json::from_slice::<Kind>(body).ok().map(|k| k.kind);
    TYPES.into_iter().find(|t| Some(*t) == kind).unwrap_or("unknown")
}

/// The innermost error (reqwest's top level says only "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_a_bounded_label() {
        assert_eq!(event_type(br#"{"type":"delivery.updated"}"#), "delivery.updated");
        assert_eq!(event_type(br#"{"type":"something.else"}"#), "unknown");
        assert_eq!(event_type(b"not json"), "unknown");
    }
}
