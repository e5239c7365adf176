//! Event webhooks: every change an app cares about reaches the receiver, signed as Standard
//! Webhooks defines it, at least once, with the same `webhook-id` on every try; what no
//! try delivers is dead-lettered with the reason. The receiver is the fake Twilio's, which
//! verifies each signature with the test secret.

mod finals;
mod packs;
mod retries;

use std::collections::HashSet;
use std::time::Duration;

use verify_api::routes::events::Event;
use verify_tests::fake_twilio::ReceivedEvent;
use verify_tests::harness::{Options, TestApp, spawn_app_with};

/// The events received about verification `id`, once `done` holds for them (bounded wait).
pub async fn events_about(
    app: &TestApp,
    id: &str,
    what: &str,
    done: impl Fn(&[ReceivedEvent]) -> bool,
) -> Vec<ReceivedEvent> {
    let of = |f: &verify_tests::fake_twilio::FakeTwilio| -> Vec<ReceivedEvent> {
        f.events().into_iter().filter(|e| e.verification_id() == id).collect()
    };
    app.watch.step(&format!("waiting for {what}"));
    app.fake
        .wait_until(Duration::from_secs(20), what, |f| done(&of(f)))
        .await;
    let events = of(&app.fake);
    // Each one has the documented shape (the OpenAPI schema `Event`), nothing more.
    for e in &events {
        serde_json::from_value::<Event>(e.event.clone())
            .unwrap_or_else(|err| panic!("{} does not read as an Event: {err}", e.event));
    }
    events
}

/// Takes the message at the head of the events dead-letter queue (once it has one) with its
/// `x-dead-reason`.
pub async fn take_dead_event(app: &TestApp) -> (lapin::message::BasicGetMessage, String) {
    let dead = app.topology().events_dead_queue();
    app.wait_for_queue_depth(&dead, 1).await;
    let conn = common::broker::connect(&verify_tests::harness::amqp_url(), "verify-tests")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let message = channel
        .basic_get(dead.as_str().into(), lapin::options::BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a dead-lettered event");
    drop(conn.close(200, "ok".into()).await);
    let headers = message.properties.headers().clone().unwrap_or_default();
    let reason = match headers.inner().get("x-dead-reason") {
        Some(lapin::types::AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("no reason: {other:?}"),
    };
    (message, reason)
}

/// Publishes `body` with `properties` to `queue` and waits for the broker's confirm.
pub async fn publish_to(queue: &str, body: &[u8], properties: lapin::BasicProperties) {
    let conn = common::broker::connect(&verify_tests::harness::amqp_url(), "verify-tests")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    common::broker::publish_confirmed(&channel, queue, body, properties, Duration::from_secs(5))
        .await
        .expect("publishing to a test queue");
    drop(conn.close(200, "ok".into()).await);
}

pub fn has(events: &[ReceivedEvent], kind: &str) -> bool {
    events.iter().any(|e| e.kind() == kind)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verification_is_followed_from_its_send_to_its_approval() {
    let app = spawn_app_with(Options::default().with_events()).await;
    let number = "+14155552671";
    let id = app.start_ok(number).await.to_string();
    let code = app.wait_for_code(number, 1).await;
    let approved: serde_json::Value = app.check(number, &code).await.json().await.unwrap();
    assert_eq!(approved["status"], "approved");

    let update = |e: &[ReceivedEvent], status: &str| {
        e.iter()
            .any(|e| e.kind() == "delivery.updated" && e.event["data"]["delivery_status"] == status)
    };
    // The receiver may get them in any order (several are delivered at once).
    let events = events_about(&app, &id, "delivery updates and the approval", |e| {
        has(e, "verification.approved") && ["submitted", "sent", "delivered"].iter().all(|s| update(e, s))
    })
    .await;
    assert!(events.iter().all(|e| e.verified && e.answered == 204), "{events:#?}");
    let ids: HashSet<&str> = events.iter().map(|e| e.webhook_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "one webhook-id per event: {events:#?}");
    assert!(events.iter().all(|e| e.webhook_id.starts_with("msg_")));
    // Each delivery status the app can act on, each once; `sending` (a worker took the job) is
    // the service's own business.
    let deliveries: Vec<&str> = events
        .iter()
        .filter(|e| e.kind() == "delivery.updated")
        .map(|e| e.event["data"]["delivery_status"].as_str().unwrap())
        .collect();
    for status in ["submitted", "sent", "delivered"] {
        assert_eq!(deliveries.iter().filter(|s| **s == status).count(), 1, "{deliveries:?}");
    }
    assert!(!deliveries.contains(&"sending"), "{deliveries:?}");
    let approval = events.iter().find(|e| e.kind() == "verification.approved").unwrap();
    let data = &approval.event["data"];
    assert_eq!(
        (
            data["id"].as_str(),
            data["phone_number"].as_str(),
            data["status"].as_str(),
            data["channel"].as_str()
        ),
        (Some(id.as_str()), Some(number), Some("approved"), Some("sms"))
    );
    assert!(data.get("error_code").is_some_and(|c| c.is_null()), "{data}");
    let at = approval.event["timestamp"].as_str().unwrap();
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{at} is not RFC 3339: {e}"));
    // Published rows leave the table (when the relay commits, which may come after the
    // receiver got them: the relay commits once the broker confirmed).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} events stay in the table"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_events_url_nothing_is_written() {
    let app = spawn_app_with(Options::default().env("TEST_NUMBERS", "+14155550100:123456")).await;
    let number = "+14155552671";
    app.start_ok(number).await;
    let code = app.wait_for_code(number, 1).await;
    assert_eq!(app.check(number, &code).await.status(), 200);
    app.start_ok("+14155550100").await;
    assert_eq!(app.check("+14155550100", "123456").await.status(), 200);
    // The approvals are committed (their answers came back): an event would be in the table
    // or on its way, and no event queue exists to take it.
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(written, 0);
    assert!(!app.topology().queues().iter().any(|q| q.contains("events")));
    assert_eq!(app.fake.event_totals(), (0, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_see_the_event_queues() {
    let app = spawn_app_with(Options::default().with_events()).await;
    // Until the worker consumes the events queue (it connects in the background).
    let events = format!("{}.events", app.queue);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let response = app
            .http
            .get(format!("{}/v1/ops/queues", app.api_base))
            .bearer_auth(verify_tests::harness::API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        let consumed = body["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == events.as_str() && q["consumers"] == 1);
        if consumed {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no consumer on {events}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&events.as_str()), "{names:?}");
    assert!(names.contains(&format!("{events}.dead").as_str()), "{names:?}");
    assert!(names.contains(&format!("{events}.retry.5s").as_str()), "{names:?}");
    assert!(names.contains(&format!("{events}.retry.36000s").as_str()), "{names:?}");
    app.stop().await;
}
