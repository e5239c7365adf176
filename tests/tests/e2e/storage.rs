//! Storage that stays bounded: rate-limit bookkeeping sized by the keys in use, and data
//! deleted past `RETENTION_DAYS`.

use serde_json::json;
use uuid::Uuid;
use verify_tests::harness::{Options, TestApp, spawn_app, spawn_app_with};

/// `(rows, most times kept under one key)` of the rate-limit table.
async fn bookkeeping(app: &TestApp) -> (i64, i32) {
    sqlx::query_as("SELECT count(*), coalesce(max(cardinality(times)), 0) FROM rate_limits")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_bookkeeping_grows_with_the_keys_not_with_the_events() {
    let options = Options::default()
        .without_worker()
        .env("RATE_LIMITS", "on")
        .env("RESEND_COOLDOWN_SECONDS", "0")
        .env("SENDS_PER_NUMBER", "3")
        .env("STARTS_PER_IP_PER_MINUTE", "1000")
        .env("CHECKS_PER_IP_PER_MINUTE", "1000")
        .env("WRONG_CODES_PER_NUMBER_PER_DAY", "4")
        .env("PREFIX_STARTS_PER_MINUTE", "0");
    let app = spawn_app_with(options).await;
    let phone = "+14155552671";
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(app.start(phone).await.status().as_u16());
        statuses.push(app.check(phone, "000000").await.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 3, "{statuses:?}");
    // One row per key (the number's starts and wrong codes, the address's starts and checks),
    // not one per event: 14 events were taken (refused requests take none), and no key keeps
    // more event times than its limit lets count (3 starts, 4 wrong codes).
    assert_eq!(bookkeeping(&app).await, (4, 4));

    // Keys whose window passed are forgotten; live ones stay.
    sqlx::query("UPDATE rate_limits SET expires_at = now() - interval '1 second' WHERE key LIKE '%:ip:%'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(common::limits::forget_expired(&app.pool).await.unwrap(), 2);
    assert_eq!(bookkeeping(&app).await, (2, 4));
    // The number is still limited: forgetting the address keys lost none of its counts.
    assert_eq!(app.start(phone).await.status(), 429);
    app.stop().await;
}

/// Ages a verification, its attempts and its delivery events by `days`.
async fn age(app: &TestApp, id: Uuid, days: i32) {
    sqlx::query(
        "WITH v AS (UPDATE verifications SET created_at = created_at - make_interval(days => $2) \
                    WHERE id = $1 RETURNING provider_message_sid) \
         UPDATE delivery_events SET received_at = received_at - make_interval(days => $2) \
         WHERE message_sid = (SELECT provider_message_sid FROM v)",
    )
    .bind(id)
    .bind(days)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// Rows about verification `id`: itself, its attempts, its delivery events.
async fn rows_of(app: &TestApp, id: Uuid, sid: &str) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM verifications WHERE id = $1), \
                (SELECT count(*) FROM send_attempts WHERE verification_id = $1), \
                (SELECT count(*) FROM delivery_events WHERE message_sid = $2)",
    )
    .bind(id)
    .bind(sid)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_starting_worker_deletes_verifications_past_retention_with_their_attempts_and_events() {
    let app = spawn_app().await;
    let mut sent = Vec::new();
    for phone in ["+14155552671", "+14155552672", "+14155552673"] {
        let id = app.start_ok(phone).await;
        let view = app.wait_for_field(id, "delivery_status", "delivered").await;
        let sid = view["provider_message_sid"].as_str().unwrap().to_owned();
        assert!(rows_of(&app, id, &sid).await.2 > 0, "callbacks were recorded");
        sent.push((id, sid));
    }
    age(&app, sent[0].0, 31).await;
    age(&app, sent[1].0, 40).await;
    age(&app, sent[2].0, 29).await;

    let (_worker, log) = app.spawn_process("verify-worker", &[("RETENTION_DAYS", "30")]);
    app.watch.step("waiting for the worker's retention sweep");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while rows_of(&app, sent[1].0, &sent[1].1).await != (0, 0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sweep (log {})",
            log.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows_of(&app, sent[0].0, &sent[0].1).await, (0, 0, 0));
    let young = rows_of(&app, sent[2].0, &sent[2].1).await;
    assert!(
        young.0 == 1 && young.1 == 1 && young.2 > 0,
        "the 29-day-old one stays: {young:?}"
    );
    let view = app.get_verification(sent[2].0).await;
    assert_eq!(view["status"], json!("pending"));
    app.stop().await;
}
