//! What the idempotency tests share: keyed requests, their answers, counts in the database.

use std::time::Duration;

use reqwest::Response;
use serde_json::Value;
use verify_tests::harness::{API_KEY, TestApp};

pub const OTHER_KEY: &str = "second-key-0123456789";

pub async fn post(app: &TestApp, base: &str, path: &str, api_key: &str, key: &str, body: &str) -> Response {
    app.http
        .post(format!("{base}{path}"))
        .bearer_auth(api_key)
        .header("Idempotency-Key", key)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Status, body, and whether the answer says it is a replay.
pub async fn answer(response: Response) -> (u16, Value, bool) {
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (response.status().as_u16(), response.json().await.unwrap(), replayed)
}

/// A keyed start sent in the background, held by a lock on the table it writes until the
/// returned transaction ends.
pub async fn start_behind_lock(
    app: &TestApp,
    key: &str,
    body: &str,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio::task::JoinHandle<Response>,
) {
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE verifications IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let request = app
        .http
        .post(format!("{}/v1/verifications", app.api_base))
        .bearer_auth(API_KEY)
        .header("Idempotency-Key", key)
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    (lock, tokio::spawn(async move { request.send().await.unwrap() }))
}

/// Polls (bounded) until `sql` counts at least one row.
pub async fn wait_for_count(app: &TestApp, sql: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(app, sql).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A start with `key` while its first request runs: 409.
pub async fn assert_in_progress(app: &TestApp, key: &str, body: &str) {
    let (status, busy, _) = answer(post(app, &app.api_base, "/v1/verifications", API_KEY, key, body).await).await;
    assert_eq!(
        (status, busy["error"]["code"].as_str()),
        (409, Some("idempotency_key_in_progress"))
    );
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}
