//! A Twilio that fails, throttles and refuses.

use std::time::Duration;

use verify_tests::fake_twilio::{FakeConfig, Fault};
use verify_tests::harness::{Options, spawn_app_with};

use crate::{assert_one_sms_each, burst, numbers, serial, wait_for_empty_queues, wait_until_settled};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault test: run with --include-ignored"]
async fn a_third_of_twilio_calls_failing_still_sends_every_sms_exactly_once() {
    let _serial = serial().await;
    let mut options = Options::default()
        .env("SEND_MAX_ATTEMPTS", "12")
        .env("TWILIO_TIMEOUT_MS", "300")
        .env("WORKER_CONCURRENCY", "32");
    options.fake = FakeConfig {
        timeout_hold: Duration::from_millis(600),
        ..options.fake
    };
    let mut app = spawn_app_with(options).await;
    app.start_worker().await;
    app.fake.set_fault_rate(0.3);
    // A throttling burst first: 429s are retried like any other never-processed call.
    app.fake.push_faults([Fault::TooManyRequests; 40]);

    let phones = numbers(400);
    let (answers, _) = burst(&app, &phones, 16).await;
    let ids: Vec<_> = answers
        .iter()
        .map(|(p, a)| a.unwrap_or_else(|s| panic!("start for {p} got {s}")))
        .collect();
    // Permanent refusals are never retried.
    let refused = app.start_ok("+15005550001").await;

    let statuses = wait_until_settled(&app, &ids, Duration::from_secs(120)).await;
    assert!(
        statuses
            .iter()
            .all(|s| ["submitted", "sent", "delivered"].contains(&s.as_str())),
        "{statuses:?}"
    );
    // Every job done with (duplicates and retries too) before counting SMS and calls.
    wait_for_empty_queues(&app).await;
    assert_one_sms_each(&app, &phones);
    let view = app.wait_for_field(refused, "delivery_status", "failed").await;
    assert_eq!(view["send_attempts"], 1);
    assert_eq!(view["delivery_error_code"], 21211);

    let outcomes: Vec<(String, i64)> =
        sqlx::query_as("SELECT outcome, count(*) FROM send_attempts GROUP BY outcome ORDER BY outcome")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let count = |o: &str| outcomes.iter().find(|(name, _)| name == o).map_or(0, |(_, n)| *n);
    assert!(count("retry") >= 40, "429s and 503s were retried: {outcomes:?}");
    assert!(count("not_at_twilio") + count("submitted") > 0, "{outcomes:?}");
    assert_eq!(
        count("in_flight") + count("ambiguous"),
        0,
        "every call was settled: {outcomes:?}"
    );
    let most: i32 = sqlx::query_scalar("SELECT max(send_attempts) FROM verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(most <= 12, "attempts stay within SEND_MAX_ATTEMPTS: {most}");
    app.stop().await;
}
