//! Each final status raises its event, whoever makes the change: a newer start (canceled),
//! wrong codes (max attempts), Twilio's callback (failed), the expiry sweeper (expired).

use serde_json::Value;
use verify_tests::harness::{Options, spawn_app_with};

use super::{events_about, has};

#[tokio::test(flavor = "multi_thread")]
async fn every_final_status_raises_its_event() {
    let options = Options::default()
        .with_events()
        .env("TEST_NUMBERS", "+14155550100:123456,+14155550101:123456");
    let app = spawn_app_with(options).await;

    // Canceled by a newer start for the same number.
    let first = app.start_ok("+14155550100").await.to_string();
    app.start_ok("+14155550100").await;
    let canceled = events_about(&app, &first, "verification.canceled", |e| {
        has(e, "verification.canceled")
    })
    .await;
    let event = canceled.iter().find(|e| e.kind() == "verification.canceled").unwrap();
    assert_eq!(event.event["data"]["status"], "canceled");

    // Max attempts: five wrong codes.
    let guessed = app.start_ok("+14155550101").await.to_string();
    for _ in 0..5 {
        let answer: Value = app.check("+14155550101", "000000").await.json().await.unwrap();
        assert_ne!(answer["status"], "approved");
    }
    events_about(&app, &guessed, "verification.max_attempts_reached", |e| {
        has(e, "verification.max_attempts_reached")
    })
    .await;

    // Failed: the only channel came back undelivered, with Twilio's error code.
    let number = "+14155552671";
    app.fake.set_final_status(number, "undelivered", Some(30003));
    let failed = app.start_ok(number).await.to_string();
    let events = events_about(&app, &failed, "undelivered and verification.failed", |e| {
        has(e, "verification.failed")
            && e.iter()
                .any(|e| e.kind() == "delivery.updated" && e.event["data"]["delivery_status"] == "undelivered")
    })
    .await;
    let undelivered = events
        .iter()
        .find(|e| e.kind() == "delivery.updated" && e.event["data"]["delivery_status"] == "undelivered")
        .unwrap_or_else(|| panic!("no undelivered update: {events:#?}"));
    assert_eq!(undelivered.event["data"]["error_code"], 30003);
    assert_eq!(undelivered.event["data"]["channel"], "sms");
    let failure = events.iter().find(|e| e.kind() == "verification.failed").unwrap();
    assert_eq!(failure.event["data"]["status"], "failed");

    // Expired: nobody reads it; the sweeper notices. Its expiry is moved into the past (the
    // shortest CODE_TTL_SECONDS is 30 s).
    let number = "+14155552672";
    let expiring = app.start_ok(number).await.to_string();
    app.wait_for_code(number, 1).await;
    sqlx::query("UPDATE verifications SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&expiring)
        .execute(&app.pool)
        .await
        .unwrap();
    let events = events_about(&app, &expiring, "verification.expired", |e| {
        has(e, "verification.expired")
    })
    .await;
    let expired = events.iter().find(|e| e.kind() == "verification.expired").unwrap();
    assert_eq!(expired.event["data"]["status"], "expired");
    let stored: String = sqlx::query_scalar("SELECT status FROM verifications WHERE id = $1::uuid")
        .bind(&expiring)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "expired");

    // Every one of them verified, and none came twice.
    let all = app.fake.events();
    assert!(all.iter().all(|e| e.verified), "{all:#?}");
    for kind in [
        "verification.canceled",
        "verification.max_attempts_reached",
        "verification.failed",
        "verification.expired",
    ] {
        assert_eq!(all.iter().filter(|e| e.kind() == kind).count(), 1, "{kind}");
    }
    assert!(!all.iter().any(|e| e.kind() == "verification.approved"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fallback_shows_as_a_delivery_update_of_the_next_channel() {
    let app = spawn_app_with(Options::default().with_events()).await;
    let number = "+14155552673";
    app.fake.set_final_status(number, "undelivered", Some(30005));
    let response = app
        .post_json(
            "/v1/verifications",
            &serde_json::json!({"phone_number": number, "channels": ["sms", "call"]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = events_about(&app, &id, "the call's delivery", |e| {
        e.iter()
            .any(|e| e.event["data"]["channel"] == "call" && e.event["data"]["delivery_status"] == "delivered")
    })
    .await;
    // In the order of the changes (the receiver may get them in another order).
    let mut events = events;
    events.sort_by(|a, b| a.event["timestamp"].as_str().cmp(&b.event["timestamp"].as_str()));
    let updates: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.kind() == "delivery.updated")
        .map(|e| {
            let data = &e.event["data"];
            (
                data["channel"].as_str().unwrap().to_owned(),
                data["delivery_status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let position = |channel: &str, status: &str| {
        updates
            .iter()
            .position(|(c, s)| c == channel && s == status)
            .unwrap_or_else(|| panic!("no {channel} {status} in {updates:?}"))
    };
    // The SMS failed, the call was queued (the fallback), then delivered; the verification
    // itself did not fail.
    assert!(position("sms", "undelivered") < position("call", "queued"));
    assert!(position("call", "queued") < position("call", "delivered"));
    assert!(!has(&events, "verification.failed"), "{events:#?}");
    app.stop().await;
}
