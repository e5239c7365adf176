//! Starting verifications and checking codes.

use serde_json::Value;
use verify_tests::harness::{Options, spawn_app, spawn_app_with};

const PHONE: &str = "+14155552671";
const OTHER: &str = "+14155552672";

fn wrong(code: &str) -> String {
    // Same length, different last digit.
    let (head, last) = code.split_at(code.len() - 1);
    format!("{head}{}", (last.parse::<u8>().unwrap() + 1) % 10)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_leads_to_exactly_one_sms_whose_code_approves() {
    let app = spawn_app().await;

    let response = app.start(PHONE).await;
    assert_eq!(response.status(), 202);
    let started: Value = response.json().await.unwrap();
    assert_eq!(started["phone_number"], PHONE);
    assert_eq!(started["status"], "pending");
    assert_eq!(started["delivery_status"], "queued");
    assert!(started["expires_at"].as_str().unwrap() > started["created_at"].as_str().unwrap());

    let code = app.wait_for_code(PHONE, 1).await;
    assert_eq!(code.len(), 6);
    let sms = &app.fake.messages_to(PHONE)[0];
    assert_eq!(sms.body, format!("Your verification code is {code}"));
    assert_eq!(sms.from.as_deref(), Some(verify_tests::harness::FROM));
    assert_eq!(
        sms.status_callback.as_deref(),
        Some(format!("{}/v1/webhooks/twilio/status", app.api_base).as_str())
    );
    let validity = sms.validity_period.unwrap();
    assert!((500..=600).contains(&validity), "ValidityPeriod {validity}");

    let response = app.check(PHONE, &code).await;
    assert_eq!(response.status(), 200);
    let checked: Value = response.json().await.unwrap();
    assert_eq!(checked["status"], "approved");
    assert_eq!(checked["valid"], true);
    assert_eq!(checked["id"], started["id"]);

    let id = started["id"].as_str().unwrap().parse().unwrap();
    let view = app.wait_for_field(id, "delivery_status", "delivered").await;
    assert_eq!(view["status"], "approved");
    assert_eq!(view["send_attempts"], 1);
    assert!(view["provider_message_sid"].as_str().unwrap().starts_with("SM"));
    assert_eq!(app.fake.messages().len(), 1, "exactly one SMS");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_approves_only_once() {
    let app = spawn_app().await;
    app.start_ok(PHONE).await;
    let code = app.wait_for_code(PHONE, 1).await;
    assert_eq!(app.check(PHONE, &code).await.status(), 200);
    let again = app.check(PHONE, &code).await;
    assert_eq!(again.status(), 404);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "verification_not_found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_code_counts_down_and_locks() {
    let app = spawn_app().await;
    let id = app.start_ok(PHONE).await;
    let code = app.wait_for_code(PHONE, 1).await;
    let bad = wrong(&code);
    for remaining in (1..5).rev() {
        let body: Value = app.check(PHONE, &bad).await.json().await.unwrap();
        assert_eq!(body["valid"], false);
        assert_eq!(body["status"], "pending");
        assert_eq!(body["attempts_remaining"], remaining);
    }
    let last: Value = app.check(PHONE, &bad).await.json().await.unwrap();
    assert_eq!(last["status"], "max_attempts_reached");
    assert_eq!(last["attempts_remaining"], 0);
    // Locked: even the right code is refused now.
    assert_eq!(app.check(PHONE, &code).await.status(), 404);
    let view = app.get_verification(id).await;
    assert_eq!(view["status"], "max_attempts_reached");
    assert_eq!(view["check_attempts"], 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_guesses_get_no_more_than_the_allowed_attempts() {
    let app = spawn_app().await;
    let id = app.start_ok(PHONE).await;
    let code = app.wait_for_code(PHONE, 1).await;
    let bad = wrong(&code);
    let guesses = (0..40).map(|_| app.check(PHONE, &bad));
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 404).count(), 35, "{statuses:?}");
    let view = app.get_verification(id).await;
    assert_eq!(view["check_attempts"], 5);
    assert_eq!(view["status"], "max_attempts_reached");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_sent_to_one_number_does_not_approve_another() {
    let app = spawn_app().await;
    app.start_ok(PHONE).await;
    let other_id = app.start_ok(OTHER).await;
    let code = app.wait_for_code(PHONE, 1).await;
    let other_code = app.wait_for_code(OTHER, 1).await;
    if code != other_code {
        let body: Value = app.check(OTHER, &code).await.json().await.unwrap();
        assert_eq!(body["valid"], false);
        assert_eq!(body["status"], "pending");
    }
    // A number that never started a verification has nothing to approve.
    assert_eq!(app.check("+14155552673", &code).await.status(), 404);
    assert_eq!(app.get_verification(other_id).await["status"], "pending");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_code_is_refused() {
    let app = spawn_app().await;
    let id = app.start_ok(PHONE).await;
    let code = app.wait_for_code(PHONE, 1).await;
    sqlx::query("UPDATE verifications SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.check(PHONE, &code).await.status(), 404);
    assert_eq!(app.get_verification(id).await["status"], "expired");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_start_supersedes_the_older_code() {
    let app = spawn_app().await;
    let first = app.start_ok(PHONE).await;
    let first_code = app.wait_for_code(PHONE, 1).await;
    let second = app.start_ok(PHONE).await;
    let second_code = app.wait_for_code(PHONE, 2).await;
    assert_eq!(app.get_verification(first).await["status"], "canceled");
    if first_code != second_code {
        let body: Value = app.check(PHONE, &first_code).await.json().await.unwrap();
        assert_eq!(body["valid"], false, "the superseded code must not approve");
        assert_eq!(body["id"], second.to_string());
    }
    let body: Value = app.check(PHONE, &second_code).await.json().await.unwrap();
    assert_eq!(body["status"], "approved");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_superseded_verification_still_queued_sends_no_sms() {
    let mut app = spawn_app_with(Options::default().without_worker()).await;
    let first = app.start_ok(PHONE).await;
    let second = app.start_ok(PHONE).await;
    let first_view = app.get_verification(first).await;
    assert_eq!(first_view["status"], "canceled");
    assert_eq!(first_view["delivery_status"], "canceled");

    app.start_worker().await;
    app.wait_for_field(second, "delivery_status", "delivered").await;
    // The first job too is done with (the worker takes both at once and may finish it last).
    app.wait_until_idle().await;
    assert_eq!(
        app.fake.messages_to(PHONE).len(),
        1,
        "only the newest verification is texted"
    );
    let first_view = app.get_verification(first).await;
    assert_eq!(first_view["delivery_status"], "canceled");
    assert_eq!(first_view["send_attempts"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_code_expired_in_the_queue_is_not_sent() {
    let mut app = spawn_app_with(Options::default().without_worker()).await;
    let id = app.start_ok(PHONE).await;
    sqlx::query("UPDATE verifications SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    app.start_worker().await;
    let view = app.wait_for_field(id, "delivery_status", "expired").await;
    assert_eq!(view["status"], "expired");
    assert_eq!(app.fake.create_calls(), 0);
    app.stop().await;
}
