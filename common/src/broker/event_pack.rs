//! Several events to one message of the events queue.
//!
//! Under load the relay publishes events in packs of up to [`PER_MESSAGE`]: a persistent,
//! confirmed message on a quorum queue costs the broker about as much as the POST of the
//! event costs the worker, so one message per event made RabbitMQ the largest part of an
//! event's cost (BENCHMARKS.md). A pack is a JSON array of `{"id": webhook-id, "event":
//! body}`, with the body kept byte for byte (it is what the signature covers), marked by the
//! [`PACK_HEADER`] with the count. Retries and dead letters stay one event per message: a
//! worker that fails an event of a pack publishes that event alone to its delay queue.
//!
//! A lone event is published as before (the body, the webhook-id as message id), so a worker
//! that predates packs still delivers the events of a quiet relay; upgrade workers first.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Most events in one message.
pub const PER_MESSAGE: usize = 25;
/// Marks a pack; its value is the number of events in it.
pub const PACK_HEADER: &str = "x-event-pack";

/// One event of a pack, as written and as read (borrowing from the message body).
#[derive(Debug, Serialize, Deserialize)]
pub struct Packed<'a> {
    /// The event's `webhook-id`.
    pub id: &'a str,
    /// The body POSTed, exactly as the relay read it from PostgreSQL.
    #[serde(borrow)]
    pub event: &'a RawValue,
}

/// A pack's body, or `None` if an event's body is not JSON (then each goes alone, as is).
pub fn pack(events: &[(&str, &str)]) -> Option<Vec<u8>> {
    let packed = events
        .iter()
        .map(|&(id, body)| {
            let event = serde_json::from_str::<&RawValue>(body).ok()?;
            Some(Packed { id, event })
        })
        .collect::<Option<Vec<_>>>()?;
    serde_json::to_vec(&packed).ok()
}

/// The events of a pack's body.
pub fn unpack(body: &[u8]) -> Result<Vec<Packed<'_>>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Persistent JSON marked as a pack of `count` events.
pub fn pack_properties(count: usize) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(PACK_HEADER.into(), AMQPValue::LongLongInt(count as i64));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers)
}

/// Whether a message of the events queue is a pack.
pub fn is_pack(properties: &BasicProperties) -> bool {
    properties
        .headers()
        .as_ref()
        .is_some_and(|h| h.inner().contains_key(PACK_HEADER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_keeps_every_body_byte_for_byte() {
        let bodies = [r#"{"type":"a", "data": {"x": 1.50}}"#, r#"{ "type" : "b" }"#];
        let events = [("msg_1", bodies[0]), ("msg_2", bodies[1])];
        let body = pack(&events).unwrap();
        let unpacked = unpack(&body).unwrap();
        assert_eq!(unpacked.len(), 2);
        for (packed, (id, text)) in unpacked.iter().zip(events) {
            assert_eq!(packed.id, id);
            assert_eq!(packed.event.get(), text);
        }
    }

    #[test]
    fn a_body_that_is_not_json_cannot_be_packed() {
        assert!(pack(&[("msg_1", "{}"), ("msg_2", "not json")]).is_none());
        assert!(unpack(b"[{\"id\": 1}]").is_err());
    }

    #[test]
    fn packs_are_marked() {
        assert!(is_pack(&pack_properties(3)));
        assert!(!is_pack(&crate::broker::event_properties("msg_1")));
    }
}
