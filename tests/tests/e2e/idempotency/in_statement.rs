//! Starts whose admission writes nothing (no rate limits, no budget: the defaults) take their
//! key in the statement that stores them: the same guarantees, one statement fewer.

use std::time::Duration;

use serde_json::json;
use verify_tests::harness::{API_KEY, Options, spawn_app_with};

use super::{answer, count, post};

#[tokio::test(flavor = "multi_thread")]
async fn a_start_taking_its_key_in_its_statement_keeps_every_guarantee() {
    let app = spawn_app_with(Options::default()).await;
    let base = app.api_base.clone();
    let body = json!({"phone_number": "+14155552671"}).to_string();

    // A second request while the first runs: 409 at once.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE verifications IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let first = tokio::spawn({
        let (http, base, body) = (app.http.clone(), base.clone(), body.clone());
        async move {
            http.post(format!("{base}/v1/verifications"))
                .bearer_auth(API_KEY)
                .header("Idempotency-Key", "busy")
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    });
    // The first holds its key once its statement waits for the lock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = count(
            &app,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%idempotency_keys%'",
        )
        .await;
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first start never reached its statement"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, busy, _) = answer(post(&app, &base, "/v1/verifications", API_KEY, "busy", &body).await).await;
    assert_eq!(
        (status, busy["error"]["code"].as_str()),
        (409, Some("idempotency_key_in_progress"))
    );
    lock.rollback().await.unwrap();
    let (status, first, replayed) = answer(first.await.unwrap()).await;
    assert_eq!((status, replayed), (202, false));
    // The statement stored the answer: a replay is the first answer, even after the SMS went out.
    app.wait_for_code("+14155552671", 1).await;
    let (status, again, replayed) = answer(post(&app, &base, "/v1/verifications", API_KEY, "busy", &body).await).await;
    assert_eq!((status, replayed), (202, true));
    assert_eq!(again, first);
    assert_eq!(count(&app, "SELECT count(*) FROM verifications").await, 1);
    assert_eq!(app.fake.messages_to("+14155552671").len(), 1);

    // Refused before its statement (400): the answer is kept for the key all the same.
    let bad = json!({"phone_number": "12"}).to_string();
    let (status, refused, replayed) = answer(post(&app, &base, "/v1/verifications", API_KEY, "bad", &bad).await).await;
    assert_eq!((status, replayed), (400, false));
    let (status, again, replayed) = answer(post(&app, &base, "/v1/verifications", API_KEY, "bad", &bad).await).await;
    assert_eq!((status, replayed, again), (400, true, refused));
    // The same key with another body: 422, nothing stored.
    let other = json!({"phone_number": "+14155552672"}).to_string();
    let (status, reused, _) = answer(post(&app, &base, "/v1/verifications", API_KEY, "bad", &other).await).await;
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(count(&app, "SELECT count(*) FROM verifications").await, 1);
    app.stop().await;
}
