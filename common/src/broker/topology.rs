//! The queue topology: the queue names, their declarations and their arguments (quorum
//! queues, the delivery limit, the retry tiers' TTLs, dead-lettering).

use std::time::Duration;

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};

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

/// Dead events kept at most (the oldest go first): a receiver down for days must not fill
/// the broker.
pub const EVENTS_DEAD_MAX: i64 = 100_000;

/// The queues of one deployment, all named after the send queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    send_queue: String,
    /// With event webhooks on: the delays between an event's tries (one delay queue each).
    event_retries: Option<Vec<Duration>>,
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
                event_retries: None,
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

    /// The same topology with the event queues, whose tries are `retries` apart.
    pub fn with_events(mut self, retries: Vec<Duration>) -> Self {
        self.event_retries = Some(retries);
        self
    }

    /// The delays between an event's tries, when events are on.
    pub fn event_retries(&self) -> Option<&[Duration]> {
        self.event_retries.as_deref()
    }

    /// The queue of events to deliver.
    pub fn events_queue(&self) -> String {
        format!("{}.events", self.send_queue)
    }

    /// Events whose every try failed, with the reason.
    pub fn events_dead_queue(&self) -> String {
        format!("{}.events.dead", self.send_queue)
    }

    /// The delay queue of events waiting `delay` for their next try.
    pub fn events_retry_queue(&self, delay: Duration) -> String {
        format!("{}.events.retry.{}s", self.send_queue, delay.as_secs())
    }

    /// The distinct delays of the event retries, shortest first.
    fn event_delays(&self) -> Vec<Duration> {
        let mut delays = self.event_retries.clone().unwrap_or_default();
        delays.sort();
        delays.dedup();
        delays
    }

    /// Every queue of the topology, for operators' views: send, retry tiers, dead letters,
    /// then (with events on) the events queue, its delay queues and its dead letters.
    pub fn queues(&self) -> Vec<String> {
        let mut queues = vec![self.send_queue.clone()];
        queues.extend(RETRY_TIERS.iter().map(|t| self.retry_queue(*t)));
        queues.push(self.dead_letter_queue());
        if self.event_retries.is_some() {
            queues.push(self.events_queue());
            queues.extend(self.event_delays().into_iter().map(|d| self.events_retry_queue(d)));
            queues.push(self.events_dead_queue());
        }
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
        if self.event_retries.is_some() {
            self.declare_events(channel).await?;
        }
        Ok(())
    }

    /// The event queues: like the send queues, but their dead letters are bounded
    /// ([`EVENTS_DEAD_MAX`], oldest dropped) and the delay queues follow the retry schedule.
    async fn declare_events(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = QueueDeclareOptions::durable();
        let dead = self.events_dead_queue();
        let mut dead_args = quorum_arguments();
        dead_args.insert("x-max-length".into(), AMQPValue::LongLongInt(EVENTS_DEAD_MAX));
        channel.queue_declare(dead.as_str().into(), durable, dead_args).await?;
        let events = self.events_queue();
        let mut args = quorum_arguments();
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
        dead_letter_to(&mut args, &dead);
        channel.queue_declare(events.as_str().into(), durable, args).await?;
        for delay in self.event_delays() {
            let mut args = quorum_arguments();
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(delay.as_millis() as i64));
            dead_letter_to(&mut args, &events);
            channel
                .queue_declare(self.events_retry_queue(delay).as_str().into(), durable, args)
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
    fn event_queues_come_with_events_only() {
        use std::time::Duration;
        let plain = Topology::new("sms.send").unwrap();
        assert!(!plain.queues().iter().any(|q| q.contains("events")));
        let t = plain.with_events([5, 300, 5, 36_000, 36_000].map(Duration::from_secs).to_vec());
        let events: Vec<String> = t.queues().into_iter().filter(|q| q.contains("events")).collect();
        assert_eq!(
            events,
            [
                "sms.send.events",
                "sms.send.events.retry.5s",
                "sms.send.events.retry.300s",
                "sms.send.events.retry.36000s",
                "sms.send.events.dead"
            ]
        );
    }

    #[test]
    fn unusable_queue_names_are_refused() {
        for bad in ["", "amq.sms", "has space", &"x".repeat(201)] {
            assert!(Topology::new(bad).is_err(), "{bad:?}");
        }
    }
}
