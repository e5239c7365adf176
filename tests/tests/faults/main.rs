//! Fault tests: real worker processes killed and stopped, RabbitMQ and PostgreSQL restarted
//! during bursts, a Twilio that fails a third of its calls.
//!
//! They restart this machine's PostgreSQL and RabbitMQ, so they are `#[ignore]`d in a plain
//! `cargo test` and run with `--include-ignored` (the README's test command, and CI). They
//! run one at a time.

mod cluster;
mod events;
mod fallback;
mod outages;
mod processes;
mod replicas;
mod twilio_faults;

use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;
use verify_tests::harness::TestApp;

/// One fault test at a time: they share (and restart) the machine's services.
static SERIAL: Mutex<()> = Mutex::const_new(());

pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// `n` distinct valid US numbers, `+1415555` followed by four digits.
pub fn numbers(n: usize) -> Vec<String> {
    assert!(n <= 9000);
    (1000..1000 + n).map(|i| format!("+1415555{i:04}")).collect()
}

/// Fires starts for `numbers` at `concurrency`; returns each number's answer (the id of a 202,
/// or the status) and how long the slowest answer took.
pub async fn burst(
    app: &TestApp,
    numbers: &[String],
    concurrency: usize,
) -> (Vec<(String, Result<Uuid, u16>)>, Duration) {
    use futures_util::StreamExt;
    let results: Vec<(String, Result<Uuid, u16>, Duration)> = futures_util::stream::iter(numbers.iter().cloned())
        .map(|phone| async move {
            let started = std::time::Instant::now();
            let response = app.start(&phone).await;
            let status = response.status().as_u16();
            let answer = if status == 202 {
                let body: Value = response.json().await.expect("start body");
                Ok(body["id"].as_str().and_then(|s| s.parse().ok()).expect("id"))
            } else {
                Err(status)
            };
            (phone, answer, started.elapsed())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let slowest = results.iter().map(|r| r.2).max().unwrap_or_default();
    (results.into_iter().map(|(p, a, _)| (p, a)).collect(), slowest)
}

/// Waits until every verification in `ids` has left `queued`/`sending`; returns their
/// delivery statuses.
pub async fn wait_until_settled(app: &TestApp, ids: &[Uuid], limit: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let statuses: Vec<String> =
            sqlx::query_scalar("SELECT delivery_status FROM verifications WHERE id = ANY($1) ORDER BY id")
                .bind(ids)
                .fetch_all(&app.pool)
                .await
                .expect("reading statuses");
        let open = statuses.iter().filter(|s| *s == "queued" || *s == "sending").count();
        if open == 0 && statuses.len() == ids.len() {
            return statuses;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} of {} verifications still unsent after {limit:?} ({} rows)",
            ids.len(),
            statuses.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every number got exactly one SMS.
pub fn assert_one_sms_each(app: &TestApp, numbers: &[String]) {
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for m in app.fake.messages() {
        *counts.entry(m.to).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "numbers texted more than once: {twice:?}");
    let missing: Vec<_> = numbers.iter().filter(|n| !counts.contains_key(*n)).collect();
    assert!(
        missing.is_empty(),
        "{} numbers never texted, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

/// Waits until every job is finished: none ready in the send queue or a retry queue, none
/// held unacknowledged by a worker (so none can still send an SMS).
pub async fn wait_for_empty_queues(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = app.unfinished_jobs().await;
        if left == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} jobs left unfinished in the send and retry queues"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
