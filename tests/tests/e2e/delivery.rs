//! The worker's send step against the fake Twilio: permanent and transient errors.

use uuid::Uuid;
use verify_tests::fake_twilio::Fault;
use verify_tests::harness::{Options, TestApp, spawn_app, spawn_app_with};

async fn attempts(app: &TestApp, id: Uuid) -> Vec<(i32, String, Option<i32>)> {
    common::repo::attempts(&app.pool, id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_twilio_errors_fail_the_verification_without_retry() {
    let app = spawn_app().await;
    for (to, code) in [
        ("+15005550001", 21211),
        ("+15005550002", 21612),
        ("+15005550003", 21408),
        ("+15005550004", 21610),
        ("+15005550009", 21614),
    ] {
        let id = app.start_ok(to).await;
        let view = app.wait_for_field(id, "delivery_status", "failed").await;
        assert_eq!(view["status"], "failed", "{to}");
        assert_eq!(view["delivery_error_code"], code, "{to}");
        assert_eq!(view["send_attempts"], 1, "{to}");
        assert_eq!(attempts(&app, id).await, vec![(1, "permanent".to_string(), Some(code))]);
    }
    assert_eq!(app.fake.create_calls(), 5, "no retries");
    assert!(app.fake.messages().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_twilio_errors_are_retried_until_the_sms_is_submitted() {
    let app = spawn_app().await;
    app.fake.push_faults([Fault::Unavailable, Fault::TooManyRequests]);
    let id = app.start_ok("+14155552671").await;
    let view = app.wait_for_field(id, "delivery_status", "delivered").await;
    assert_eq!(view["status"], "pending");
    assert_eq!(view["send_attempts"], 3);
    assert_eq!(
        attempts(&app, id).await,
        vec![
            (1, "retry".into(), Some(20503)),
            (2, "retry".into(), Some(20429)),
            (3, "submitted".into(), None)
        ]
    );
    assert_eq!(app.fake.messages().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_exhausts_its_attempts_is_dead_lettered_and_stays_replayable() {
    let app = spawn_app_with(Options::default().env("SEND_MAX_ATTEMPTS", "3")).await;
    app.fake.push_faults([Fault::Unavailable; 4]);
    let id = app.start_ok("+14155552671").await;
    let view = app.wait_for_field(id, "delivery_status", "failed").await;
    assert_eq!(
        view["status"], "pending",
        "a dead-lettered verification can be replayed"
    );
    assert_eq!(view["send_attempts"], 3);
    assert_eq!(app.fake.create_calls(), 3);
    app.wait_for_queue_depth(&app.dead_queue(), 1).await;
    let reason: Option<String> = sqlx::query_scalar("SELECT dead_letter_reason FROM verifications WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        reason.as_deref(),
        Some("3 Twilio calls failed; the last was HTTP 503 (Twilio 20503)")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_retried_as_transient() {
    // A port nothing listens on: every call is refused before anything is written.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let options = Options::default()
        .env("TWILIO_API_BASE", format!("http://{closed}"))
        .env("SEND_MAX_ATTEMPTS", "2");
    let app = spawn_app_with(options).await;
    let id = app.start_ok("+14155552671").await;
    let view = app.wait_for_field(id, "delivery_status", "failed").await;
    assert_eq!(view["send_attempts"], 2);
    assert_eq!(
        attempts(&app, id).await,
        vec![(1, "retry".into(), None), (2, "retry".into(), None)]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ambiguous_500_is_looked_up_instead_of_sent_twice() {
    let app = spawn_app().await;
    app.fake.push_faults([Fault::InternalErrorAfterCreate]);
    let id = app.start_ok("+14155552671").await;
    let view = app.wait_for_field(id, "delivery_status", "delivered").await;
    assert_eq!(app.fake.messages().len(), 1, "the SMS went out once");
    assert_eq!(
        view["provider_message_sid"].as_str(),
        Some(app.fake.messages()[0].sid.as_str())
    );
    assert_eq!(attempts(&app, id).await, vec![(1, "submitted".into(), Some(20500))]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ambiguous_500_that_sent_nothing_is_sent_again() {
    let app = spawn_app().await;
    app.fake.push_faults([Fault::InternalError, Fault::Timeout]);
    let id = app.start_ok("+14155552671").await;
    app.wait_for_field(id, "delivery_status", "delivered").await;
    assert_eq!(app.fake.messages().len(), 1);
    assert_eq!(
        attempts(&app, id).await,
        vec![
            (1, "not_at_twilio".into(), Some(20500)),
            (2, "not_at_twilio".into(), None),
            (3, "submitted".into(), None)
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undelivered_callback_fails_the_verification_with_its_error_code() {
    let app = spawn_app().await;
    app.fake.set_final_status("+14155552671", "undelivered", Some(30003));
    let id = app.start_ok("+14155552671").await;
    let view = app.wait_for_field(id, "delivery_status", "undelivered").await;
    assert_eq!(view["status"], "failed");
    assert_eq!(view["delivery_error_code"], 30003);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_messaging_service_is_used_instead_of_a_from_number_when_set() {
    let sid = "MG0123456789abcdef0123456789abcdef";
    let app = spawn_app_with(Options::default().env("TWILIO_MESSAGING_SERVICE_SID", sid)).await;
    let id = app.start_ok("+14155552671").await;
    app.wait_for_field(id, "delivery_status", "delivered").await;
    let sms = &app.fake.messages()[0];
    assert_eq!(sms.messaging_service_sid.as_deref(), Some(sid));
    assert_eq!(sms.from, None);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webotp_line_ends_the_sms_when_configured() {
    let app = spawn_app_with(Options::default().env("WEBOTP_DOMAIN", "example.com")).await;
    app.start_ok("+14155552671").await;
    let code = app.wait_for_code("+14155552671", 1).await;
    let body = app.fake.messages()[0].body.clone();
    assert_eq!(
        body,
        format!("Your verification code is {code}\n\n@example.com #{code}")
    );
    app.stop().await;
}
