//! Retry timing: the delays that happen are the ones the policy planned (jitter included),
//! however the delay queues' fixed tiers cut them, and Twilio's `Retry-After` is honoured.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;
use verify_tests::fake_twilio::Fault;
use verify_tests::harness::{Options, TestApp, spawn_app_with};

/// Long delays, all waited in the delay queues (none in the worker).
fn slow_retries() -> Options {
    Options::default()
        .without_worker()
        .env("RETRY_INITIAL_MS", "2000")
        .env("RETRY_MULTIPLIER", "4")
        .env("RETRY_INPROCESS_MAX_MS", "100")
}

/// The delays a worker planned, from its JSON log: verification id → milliseconds.
fn planned_delays(log: &std::path::Path) -> HashMap<Uuid, u64> {
    let text = std::fs::read_to_string(log).expect("the worker's log");
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == "send deferred")
        .filter_map(|entry| {
            Some((
                entry["verification_id"].as_str()?.parse().ok()?,
                entry["delay_ms"].as_u64()?,
            ))
        })
        .collect()
}

/// Time between the first and second create call for `phone`.
async fn gap_between_calls(app: &TestApp, phone: &str) -> Duration {
    app.wait_for_code(phone, 1).await;
    let calls = app.fake.create_call_times(phone);
    assert_eq!(calls.len(), 2, "one failed call and one that sent, for {phone}");
    calls[1] - calls[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_wait_the_planned_jittered_delay_not_the_delay_queue_tier() {
    let app = spawn_app_with(slow_retries()).await;
    let phones: Vec<String> = (0..4).map(|i| format!("+1415555231{i}")).collect();
    app.fake.push_faults([Fault::Unavailable; 4]);
    let mut ids = HashMap::new();
    for phone in &phones {
        ids.insert(phone.clone(), app.start_ok(phone).await);
    }
    let (_worker, log) = app.spawn_process("verify-worker", &[]);
    let mut planned = Vec::new();
    for phone in &phones {
        let gap = gap_between_calls(&app, phone).await;
        let delays = planned_delays(&log);
        let plan = Duration::from_millis(delays[&ids[phone]]);
        // 2 s ± 50 %: the schedule's first delay.
        assert!(
            (Duration::from_millis(1000)..=Duration::from_millis(3000)).contains(&plan),
            "{plan:?}"
        );
        // The delay queues hold a job for 1, 3, 10 … s; the rest is waited on top.
        assert!(
            gap + Duration::from_millis(50) >= plan && gap <= plan + Duration::from_millis(600),
            "{phone}: planned {plan:?}, waited {gap:?}"
        );
        planned.push(plan);
    }
    planned.sort();
    planned.dedup();
    assert!(planned.len() > 1, "jitter: the four retries were not planned in step");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_retried_no_sooner_than_twilio_asked() {
    let options = slow_retries().env("RETRY_INITIAL_MS", "200");
    let mut app = spawn_app_with(options).await;
    app.fake.push_faults([Fault::TooManyRequestsRetryAfter(4)]);
    app.start_worker().await;
    let phone = "+14155552320";
    app.start_ok(phone).await;
    let gap = gap_between_calls(&app, phone).await;
    assert!(
        (Duration::from_millis(3950)..=Duration::from_millis(4600)).contains(&gap),
        "Retry-After: 4 was waited {gap:?} (the schedule alone would wait about 0.2 s)"
    );
    app.stop().await;
}
