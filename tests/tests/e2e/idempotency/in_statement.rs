//! Starts whose admission writes nothing (no rate limits, no budget: the defaults) take their
//! key in the statement that stores them: the same guarantees, one statement fewer.

use serde_json::json;
use verify_tests::harness::{API_KEY, Options, spawn_app_with};

use super::support::{answer, assert_in_progress, count, post, start_behind_lock, wait_for_count};

#[tokio::test(flavor = "multi_thread")]
async fn a_start_taking_its_key_in_its_statement_keeps_every_guarantee() {
    let app = spawn_app_with(Options::default()).await;
    let base = app.api_base.clone();
    let body = json!({"phone_number": "+14155552671"}).to_string();

    // A second request while the first runs: 409 at once.
    let (lock, first) = start_behind_lock(&app, "busy", &body).await;
    // The first holds its key once its statement waits for the lock.
    let waiting =
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%idempotency_keys%'";
    wait_for_count(&app, waiting, "the first start to reach its statement").await;
    assert_in_progress(&app, "busy", &body).await;
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
