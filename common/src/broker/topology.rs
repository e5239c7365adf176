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
