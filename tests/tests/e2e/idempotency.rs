//! `Idempotency-Key` on starts and checks: the same key and body answer the first answer
//! again with no new verification, SMS, attempt or rate-limit use; another body 422; a key
//! whose first request runs 409; per API key; shared by API replicas.

mod in_statement;
mod support;

use support::*;

use std::time::Duration;

use serde_json::{Value, json};
use verify_tests::harness::{API_KEY, Options, spawn_app_with};

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_start_answers_the_first_answer_and_sends_nothing_more() {
    let options = Options::default()
        .env("RATE_LIMITS", "on")
        .env("SENDS_PER_NUMBER", "2")
        .env("RESEND_COOLDOWN_SECONDS", "0");
    let app = spawn_app_with(options).await;
    let (base, phone) = (app.api_base.clone(), "+14155552671");
    let body = json!({"phone_number": phone}).to_string();
    let (status, first, replayed) =
        answer(post(&app, &base, "/v1/verifications", API_KEY, "signup-1", &body).await).await;
    assert_eq!((status, replayed), (202, false));
    // The same request again, also spaced differently: the first answer, nothing new.
    for again in [body.clone(), format!("{{ \"phone_number\" : \"{phone}\" }}")] {
        let (status, body, replayed) =
            answer(post(&app, &base, "/v1/verifications", API_KEY, "signup-1", &again).await).await;
        assert_eq!((status, replayed), (202, true));
        assert_eq!(body, first);
    }
    app.wait_for_code(phone, 1).await;
    app.wait_until_idle().await;
    assert_eq!(app.fake.messages_to(phone).len(), 1, "one SMS");
    assert_eq!(count(&app, "SELECT count(*) FROM verifications").await, 1);
    // The replays used none of the number's two starts: one more is admitted, then refused.
    assert_eq!(app.start(phone).await.status(), 202);
    assert_eq!(app.start(phone).await.status(), 429);
    // The same key and body from another API key is another request.
    let (status, other, replayed) =
        answer(post(&app, &base, "/v1/verifications", OTHER_KEY, "signup-1", &body).await).await;
    assert_eq!((status, replayed), (429, false), "{other}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_used_for_another_request_is_refused_and_changes_nothing() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let base = app.api_base.clone();
    let start = json!({"phone_number": "+14155552671"}).to_string();
    assert_eq!(
        post(&app, &base, "/v1/verifications", API_KEY, "k", &start)
            .await
            .status(),
        202
    );
    let other_number = json!({"phone_number": "+14155552672"}).to_string();
    let check = json!({"phone_number": "+14155552671", "code": "000000"}).to_string();
    for (path, body) in [
        ("/v1/verifications", &other_number),
        ("/v1/verifications/check", &check),
    ] {
        let (status, body, _) = answer(post(&app, &base, path, API_KEY, "k", body).await).await;
        assert_eq!(status, 422, "{path}");
        assert_eq!(body["error"]["code"], "idempotency_key_reused");
    }
    for bad in ["k".repeat(256), " ".into()] {
        let (status, body, _) =
            answer(post(&app, &base, "/v1/verifications", API_KEY, &bad, &other_number).await).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")));
    }
    assert_eq!(count(&app, "SELECT count(*) FROM verifications").await, 1);
    let attempts = count(&app, "SELECT sum(check_attempts) FROM verifications").await;
    assert_eq!(attempts, 0, "no check was counted");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_check_counts_one_attempt_and_answers_the_same() {
    let app = spawn_app_with(Options::default()).await;
    let (base, phone) = (app.api_base.clone(), "+14155552671");
    app.start_ok(phone).await;
    let code = app.wait_for_code(phone, 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let wrong_check = json!({"phone_number": phone, "code": wrong}).to_string();
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers
            .push(answer(post(&app, &base, "/v1/verifications/check", API_KEY, "check-1", &wrong_check).await).await);
    }
    assert_eq!(answers[0].1["attempts_remaining"], 4);
    assert!(answers.iter().all(|(s, b, _)| *s == 200 && *b == answers[0].1));
    assert_eq!(answers.iter().map(|a| a.2).collect::<Vec<_>>(), [false, true, true]);
    assert_eq!(count(&app, "SELECT sum(check_attempts) FROM verifications").await, 1);
    // The right code, twice with one key: approved, and the replay says so again.
    let right = json!({"phone_number": phone, "code": code}).to_string();
    let (_, approved, _) = answer(post(&app, &base, "/v1/verifications/check", API_KEY, "check-2", &right).await).await;
    let (status, again, replayed) =
        answer(post(&app, &base, "/v1/verifications/check", API_KEY, "check-2", &right).await).await;
    assert_eq!(
        (status, replayed, approved["status"].as_str()),
        (200, true, Some("approved"))
    );
    assert_eq!(again, approved);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_is_in_progress_while_its_first_request_runs_and_a_refused_one_can_be_retried() {
    let options = Options::default()
        .without_worker()
        .env("RATE_LIMITS", "on")
        .env("RESEND_COOLDOWN_SECONDS", "1");
    let app = spawn_app_with(options).await;
    let (base, phone) = (app.api_base.clone(), "+14155552671");
    let body = json!({"phone_number": phone}).to_string();
    // The first request waits for a lock on the table its start writes.
    let (lock, first) = start_behind_lock(&app, "busy", &body).await;
    // Once the first holds the key, a second with it is told to wait.
    let held = "SELECT count(*) FROM idempotency_keys WHERE idem_key = 'busy'";
    wait_for_count(&app, held, "the first request to take its key").await;
    assert_in_progress(&app, "busy", &body).await;
    lock.rollback().await.unwrap();
    let (status, first, _) = answer(first.await.unwrap()).await;
    assert_eq!(status, 202);
    let (_, replay, replayed) = answer(post(&app, &base, "/v1/verifications", API_KEY, "busy", &body).await).await;
    assert!(replayed && replay == first);

    // Refused by the cooldown (429): not kept, so the same key is tried afresh later.
    let (status, _, _) = answer(post(&app, &base, "/v1/verifications", API_KEY, "after-cooldown", &body).await).await;
    assert_eq!(status, 429);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body, replayed) =
            answer(post(&app, &base, "/v1/verifications", API_KEY, "after-cooldown", &body).await).await;
        if status == 202 {
            assert!(!replayed, "{body}");
            break;
        }
        assert!(
            status == 429 && tokio::time::Instant::now() < deadline,
            "{status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&app, "SELECT count(*) FROM verifications").await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_racing_one_key_start_one_verification() {
    let app = spawn_app_with(Options::default()).await;
    let port = verify_tests::harness::free_port();
    let (listen, other) = (format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{port}"));
    let (_replica, log) = app.spawn_process("verify-api", &[("API_LISTEN", &listen)]);
    app.wait_until_ready(&other, &log).await;
    let phone = "+14155552671";
    let body = json!({"phone_number": phone}).to_string();
    let requests = (0..24).map(|n| {
        let base = if n % 2 == 0 {
            app.api_base.clone()
        } else {
            other.clone()
        };
        let body = body.clone();
        let app = &app;
        async move { answer(post(app, &base, "/v1/verifications", API_KEY, "race", &body).await).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let started: Vec<&Value> = answers.iter().filter(|a| a.0 == 202).map(|a| &a.1).collect();
    assert!(!started.is_empty());
    assert!(
        started.iter().all(|b| b["id"] == started[0]["id"]),
        "one verification: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.0 == 202 || (a.0 == 409 && a.1["error"]["code"] == "idempotency_key_in_progress")),
        "{answers:?}"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM verifications").await, 1);
    app.wait_for_code(phone, 1).await;
    app.wait_until_idle().await;
    assert_eq!(app.fake.messages_to(phone).len(), 1, "one SMS");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_whose_process_died_before_answering_is_answered_from_its_verification() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let (base, phone) = (app.api_base.clone(), "+14155552671");
    let body = json!({"phone_number": phone, "channels": ["sms"]}).to_string();
    let (_, first, _) = answer(post(&app, &base, "/v1/verifications", API_KEY, "lost", &body).await).await;
    // As if its process had died after the start's statement committed (which tied the key to
    // the verification) and before the answer was stored: no answer, a holder still on it.
    let forget = |lease: &'static str| {
        let pool = app.pool.clone();
        async move {
            let sql = format!(
                "UPDATE idempotency_keys SET status = NULL, body = NULL, holder = 'dead', \
                 locked_until = now() + interval '{lease}' WHERE idem_key = 'lost' AND verification_id IS NOT NULL"
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            assert_eq!(done.rows_affected(), 1, "the start tied its verification to the key");
        }
    };
    forget("1 hour").await;
    let (status, _, _) = answer(post(&app, &base, "/v1/verifications", API_KEY, "lost", &body).await).await;
    assert_eq!(status, 409, "its lease still runs");
    forget("-1 second").await;
    let (status, again, replayed) = answer(post(&app, &base, "/v1/verifications", API_KEY, "lost", &body).await).await;
    assert_eq!((status, replayed), (202, true));
    assert_eq!(again, first, "the first answer, rebuilt from the verification");
    assert_eq!(
        count(&app, "SELECT count(*) FROM verifications").await,
        1,
        "not started twice"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_key_is_free_again_and_swept_with_the_retention() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let base = app.api_base.clone();
    let expire =
        || sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'").execute(&app.pool);
    let one = json!({"phone_number": "+14155552671"}).to_string();
    let two = json!({"phone_number": "+14155552672"}).to_string();
    assert_eq!(
        post(&app, &base, "/v1/verifications", API_KEY, "day-old", &one)
            .await
            .status(),
        202
    );
    expire().await.unwrap();
    // Past its 24 hours the key is a new key, whatever the body.
    let (status, _, replayed) = answer(post(&app, &base, "/v1/verifications", API_KEY, "day-old", &two).await).await;
    assert_eq!((status, replayed), (202, false));
    expire().await.unwrap();
    let swept = common::repo::sweep_older_than(&app.pool, 30).await.unwrap();
    assert_eq!(swept.idempotency_keys, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM idempotency_keys").await, 0);
    app.stop().await;
}
