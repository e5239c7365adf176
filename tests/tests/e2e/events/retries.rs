//! A receiver that fails gets the same event again, with the same `webhook-id` and a fresh
//! signature, after each delay of `EVENTS_RETRY_SCHEDULE`; after the last one the event is
//! dead-lettered with the reason.

use verify_tests::harness::{Options, Scrape, spawn_app_with};

use super::{events_about, take_dead_event};

const TEST_NUMBER: &str = "+14155550100";

fn options(schedule: &str) -> Options {
    Options::default()
        .with_events()
        .env("TEST_NUMBERS", format!("{TEST_NUMBER}:123456"))
        .env("EVENTS_RETRY_SCHEDULE", schedule)
}

/// A test number approved: one event (`verification.approved`), nothing sent.
async fn approve(app: &verify_tests::harness::TestApp) -> String {
    let id = app.start_ok(TEST_NUMBER).await.to_string();
    assert_eq!(app.check(TEST_NUMBER, "123456").await.status(), 200);
    id
}

async fn deliveries(app: &verify_tests::harness::TestApp, outcome: &str) -> f64 {
    // The in-process API and worker share one recorder: the API's scrape shows the worker's counts.
    Scrape::fetch(&app.http, &app.api_base)
        .await
        .value(
            "verify_event_deliveries_total",
            &[("type", "verification.approved"), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receiver_gets_the_same_event_again_until_it_answers() {
    let app = spawn_app_with(options("1s,1s,1s")).await;
    let retried_before = deliveries(&app, "retried").await;
    app.fake.fail_next_events(2, 503);
    let id = approve(&app).await;
    let events = events_about(&app, &id, "three tries of the approval", |e| {
        e.iter().any(|e| e.answered == 204)
    })
    .await;
    let answers: Vec<u16> = events.iter().map(|e| e.answered).collect();
    assert_eq!(answers, [503, 503, 204]);
    assert!(events.iter().all(|e| e.verified && e.kind() == "verification.approved"));
    assert!(
        events.iter().all(|e| e.webhook_id == events[0].webhook_id),
        "{events:#?}"
    );
    // The retries waited in the delay queue (at least the schedule's two seconds in all).
    let waited = events[2].received_at - events[0].received_at;
    assert!(
        waited >= time::Duration::seconds(2) - time::Duration::milliseconds(50),
        "{waited}"
    );
    assert!(deliveries(&app, "retried").await - retried_before >= 2.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_no_try_delivers_is_dead_lettered_with_the_reason() {
    let app = spawn_app_with(options("1s,1s")).await;
    app.fake.fail_next_events(100, 500);
    let id = approve(&app).await;
    let (message, reason) = take_dead_event(&app).await;
    let events = events_about(&app, &id, "three tries", |e| e.len() >= 3).await;
    assert_eq!(events.len(), 3, "a first try and one per delay: {events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e.answered == 500 && e.webhook_id == events[0].webhook_id)
    );
    assert!(
        reason.contains("answered 500") && reason.contains("3 tries"),
        "{reason}"
    );
    assert_eq!(
        message.properties.message_id().as_ref().map(|m| m.to_string()),
        Some(events[0].webhook_id.clone())
    );
    let body: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
    assert_eq!(body["type"], "verification.approved");
    // Nothing more is tried: the event leaves every queue (the dead letter, taken above, is
    // published after the last try, and the message it came from is acked just after).
    app.wait_for_queue_depth(&app.topology().events_queue(), 0).await;
    assert_eq!(app.fake.events().len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_event_is_listed_then_replayed_with_its_webhook_id() {
    let app = spawn_app_with(options("1s")).await;
    // The first try and the one retry fail; the receiver is back for the replay.
    app.fake.fail_next_events(2, 500);
    let id = approve(&app).await;
    let dead = app.topology().events_dead_queue();
    app.wait_for_queue_depth(&dead, 1).await;
    // A message that is no event (no webhook-id, not JSON) waits beside it.
    super::publish_to(&dead, b"not an event", Default::default()).await;
    app.wait_for_queue_depth(&dead, 2).await;
    let tried = events_about(&app, &id, "two tries", |e| e.len() >= 2).await;
    assert!(tried.iter().all(|e| e.answered == 500), "{tried:#?}");

    let mut listing = Vec::new();
    let seen = verify_worker::dead_letters::list_events(&app.worker_config(), &mut listing)
        .await
        .unwrap();
    let listing = String::from_utf8(listing).unwrap();
    assert_eq!(seen, 2, "{listing}");
    let line = listing
        .lines()
        .find(|l| l.contains(&tried[0].webhook_id))
        .unwrap_or_else(|| panic!("the dead event is listed: {listing}"));
    assert!(
        line.contains("verification.approved") && line.contains("answered 500") && line.contains("2 tries"),
        "{line}"
    );
    assert!(listing.contains("(no webhook-id)"), "{listing}");
    // Listing leaves the queue as it was.
    app.wait_for_queue_depth(&dead, 2).await;

    let mut output = Vec::new();
    let summary = verify_worker::dead_letters::replay_events(&app.worker_config(), &mut output)
        .await
        .unwrap();
    assert_eq!(
        summary,
        verify_worker::dead_letters::ReplaySummary { replayed: 1, kept: 1 },
        "{}",
        String::from_utf8_lossy(&output)
    );
    let events = events_about(&app, &id, "the replayed event delivered", |e| {
        e.iter().any(|e| e.answered == 204)
    })
    .await;
    assert_eq!(events.len(), 3, "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e.verified && e.webhook_id == tried[0].webhook_id && e.kind() == "verification.approved"),
        "the same webhook-id, signed again: {events:#?}"
    );
    // What is not an event stays for the operator; the events queue is empty.
    app.wait_for_queue_depth(&dead, 1).await;
    assert_eq!(app.unfinished(&[app.topology().events_queue()]).await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_events_dead_letter_commands_say_when_events_are_off() {
    let app = spawn_app_with(Options::default()).await;
    let mut out = Vec::new();
    let error = verify_worker::dead_letters::list_events(&app.worker_config(), &mut out)
        .await
        .expect_err("events are off");
    assert!(format!("{error:#}").contains("event webhooks are off"), "{error:#}");
    let error = verify_worker::dead_letters::replay_events(&app.worker_config(), &mut out)
        .await
        .expect_err("events are off");
    assert!(format!("{error:#}").contains("event webhooks are off"), "{error:#}");
    app.stop().await;
}
