//! Several events in one message of the events queue (a pack, as the relay publishes them
//! under load): each is POSTed on its own, and one that fails is retried alone; a pack that
//! cannot be read is dead-lettered whole with the reason.

use std::collections::HashMap;
use std::time::Duration;

use common::broker::event_pack;
use verify_tests::harness::{Options, TestApp, spawn_app_with};

use super::take_dead_event;

/// Publishes `body` to the events queue as a pack of `count` events, as the relay does.
async fn publish_pack(app: &TestApp, body: &[u8], count: usize) {
    super::publish_to(&app.topology().events_queue(), body, event_pack::pack_properties(count)).await;
}

/// An approval event of verification `id`, written with the spacing PostgreSQL gives JSON
/// (the body must reach the receiver as it was written: the signature covers its bytes).
fn approval(id: &str) -> String {
    format!(
        r#"{{"type": "verification.approved", "timestamp": "2026-11-30T08:00:00.000000Z", "data": {{"id": "{id}", "phone_number": "+14155550100", "status": "approved", "channel": "sms", "delivery_status": "delivered", "error_code": null}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_event_of_a_pack_is_delivered_and_a_failed_one_is_retried_alone() {
    let app = spawn_app_with(Options::default().with_events().env("EVENTS_RETRY_SCHEDULE", "1s")).await;
    let ids: Vec<(String, String)> = (0..5)
        .map(|_| {
            (
                format!("msg_{}", uuid::Uuid::new_v4().simple()),
                uuid::Uuid::new_v4().to_string(),
            )
        })
        .collect();
    let bodies: Vec<String> = ids.iter().map(|(_, id)| approval(id)).collect();
    let events: Vec<(&str, &str)> = ids
        .iter()
        .zip(&bodies)
        .map(|((w, _), b)| (w.as_str(), b.as_str()))
        .collect();
    let body = event_pack::pack(&events).expect("the bodies are JSON");

    // The first POST of the five fails: that event alone comes back after the delay.
    app.fake.fail_next_events(1, 503);
    publish_pack(&app, &body, events.len()).await;
    let ours = |f: &verify_tests::fake_twilio::FakeTwilio| {
        f.events()
            .into_iter()
            .filter(|e| ids.iter().any(|(w, _)| *w == e.webhook_id))
            .collect::<Vec<_>>()
    };
    app.watch.step("waiting for every event of the pack to be delivered");
    app.fake
        .wait_until(Duration::from_secs(20), "a 2xx for every event of the pack", |f| {
            let got = ours(f);
            ids.iter()
                .all(|(w, _)| got.iter().any(|e| e.webhook_id == *w && e.answered < 300))
        })
        .await;
    // Nothing more can come: the pack was acked and the retry left the delay queue.
    let topology = app.topology();
    let queues = [
        topology.events_queue(),
        topology.events_retry_queue(Duration::from_secs(1)),
    ];
    app.wait_for_queue_depth(&queues[0], 0).await;
    app.wait_for_queue_depth(&queues[1], 0).await;

    let got = ours(&app.fake);
    assert_eq!(got.len(), 6, "five first tries and one retry: {got:#?}");
    assert!(got.iter().all(|e| e.verified), "{got:#?}");
    let mut tries: HashMap<&str, Vec<u16>> = HashMap::new();
    for e in &got {
        tries.entry(e.webhook_id.as_str()).or_default().push(e.answered);
        // Each carries its own body, with its own verification.
        let (_, id) = ids.iter().find(|(w, _)| *w == e.webhook_id).unwrap();
        assert_eq!(e.verification_id(), id);
    }
    let retried: Vec<_> = tries.values().filter(|t| t.len() == 2).collect();
    assert_eq!(retried, [&vec![503, 204]], "{tries:?}");
    assert_eq!(tries.values().filter(|t| *t == &vec![204]).count(), 4, "{tries:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pack_that_cannot_be_read_is_dead_lettered_whole() {
    let app = spawn_app_with(Options::default().with_events()).await;
    let body = br#"[{"id": 7, "event": {}}]"#;
    publish_pack(&app, body, 1).await;
    let (message, reason) = take_dead_event(&app).await;
    assert!(reason.contains("event pack could not be read"), "{reason}");
    assert_eq!(message.data, body, "the pack as it came");
    // Nothing reached the receiver.
    assert!(app.fake.events().is_empty(), "{:#?}", app.fake.events());
    app.stop().await;
}
