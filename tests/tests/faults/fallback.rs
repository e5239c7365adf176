//! A fallback across worker crashes: a worker SIGKILLed between the two steps (the SMS out,
//! the call not yet due) and another SIGKILLed while the calls are in flight. The fallback
//! time lives in PostgreSQL and the call jobs in RabbitMQ, so every number still gets one
//! SMS and one call.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use verify_tests::harness::{Options, TestApp, spawn_app_with};

use crate::{numbers, serial};

fn kill(child: &mut verify_tests::harness::Process) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

/// Polls (bounded) until `count` of `ids` match `condition` (SQL over `verifications`).
async fn wait_for_rows(app: &TestApp, ids: &[Uuid], condition: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let sql = format!("SELECT count(*) FROM verifications WHERE id = ANY($1) AND {condition}");
    loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(ids)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if n == ids.len() as i64 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} of {} {what}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault test: run with --include-ignored"]
async fn workers_killed_between_and_during_fallback_steps_leave_one_sms_and_one_call_each() {
    let _serial = serial().await;
    let options = Options::default()
        .without_worker()
        .env("FALLBACK_AFTER_SECONDS", "5")
        .env("WORKER_CONCURRENCY", "8");
    let app = spawn_app_with(options).await;
    let phones = numbers(48);
    let mut ids = Vec::new();
    for phone in &phones {
        let response = app
            .post_json(
                "/v1/verifications",
                &json!({"phone_number": phone, "channels": ["sms", "call"]}),
            )
            .await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }

    // The first step: every SMS out; then the worker dies before any call is due.
    let mut first = app.spawn_worker_process();
    wait_for_rows(
        &app,
        &ids,
        "step = 0 AND delivery_status IN ('submitted', 'sent', 'delivered')",
        "texted",
    )
    .await;
    kill(&mut first);
    assert!(app.fake.calls().is_empty(), "the worker died before the second step");

    // With no worker running, each verification moves on when its time comes (PostgreSQL's
    // clock, an API sweep) and its call job waits in RabbitMQ.
    wait_for_rows(
        &app,
        &ids,
        "step = 1 AND delivery_status = 'queued'",
        "moved on to the call",
    )
    .await;

    // The second step, with a worker killed while calls are in flight.
    app.fake.set_latency(Duration::from_millis(400));
    let mut second = app.spawn_worker_process();
    app.fake
        .wait_until(Duration::from_secs(30), "the first call", |f| !f.calls().is_empty())
        .await;
    kill(&mut second);
    let placed = app.fake.calls().len();
    assert!(
        placed < phones.len(),
        "killed while calls were still to be placed ({placed})"
    );
    app.fake.set_latency(Duration::ZERO);
    let mut third = app.spawn_worker_process();
    wait_for_rows(&app, &ids, "step = 1 AND delivery_status = 'delivered'", "called").await;
    crate::wait_for_empty_queues(&app).await;

    for phone in &phones {
        let (sms, calls) = (app.fake.messages_to(phone).len(), app.fake.calls_to(phone).len());
        assert_eq!((sms, calls), (1, 1), "{phone}: one SMS and one call");
    }
    let view = app.get_verification(ids[0]).await;
    let channels: Vec<&str> = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["sms", "call"], "{view}");
    kill(&mut third);
    app.stop().await;
}
