//! `TEST_NUMBERS`: a start for one sends nothing, uses no rate limit, skips the country and
//! number-type rules and stores its fixed code; checks work as for any number.

use serde_json::{Value, json};
use verify_tests::harness::{Options, Scrape, spawn_app_with};

const US_TEST: &str = "+14155550100";
const UK_LANDLINE_TEST: &str = "+442071838750";

#[tokio::test(flavor = "multi_thread")]
async fn a_test_number_takes_its_fixed_code_and_gets_no_message() {
    let options = Options::default()
        .env("TEST_NUMBERS", format!("{US_TEST}:123456,{UK_LANDLINE_TEST}:654321"))
        .env("RATE_LIMITS", "on")
        .env("SENDS_PER_NUMBER", "1")
        .env("RESEND_COOLDOWN_SECONDS", "0")
        .env("ALLOWED_COUNTRIES", "US")
        .env("SMS_NUMBER_TYPES", "mobile,fixed_line_or_mobile");
    let app = spawn_app_with(options).await;
    // The recorder is shared by the apps of this test process; only this test starts test numbers.
    let test_starts = || async {
        let scrape = Scrape::fetch(&app.http, &app.api_base).await;
        scrape
            .value("verify_test_verifications_started_total", &[])
            .unwrap_or(0.0)
    };
    let before = test_starts().await;
    // Three starts where the number's limit allows one; each supersedes the one before.
    let mut started = Vec::new();
    for _ in 0..3 {
        let response = app.start(US_TEST).await;
        assert_eq!(response.status(), 202);
        started.push(response.json::<Value>().await.unwrap());
    }
    assert!(
        started
            .iter()
            .all(|s| s["test"] == true && s["delivery_status"] == "delivered"),
        "{started:?}"
    );
    let id = started[2]["id"].as_str().unwrap().parse().unwrap();
    let view = app.get_verification(id).await;
    assert_eq!(
        (view["test"].as_bool(), view["delivery_status"].as_str()),
        (Some(true), Some("delivered"))
    );
    // Checks as for any number: a wrong code counts, the fixed one approves.
    let wrong: Value = app.check(US_TEST, "000000").await.json().await.unwrap();
    assert_eq!(
        (wrong["status"].as_str(), wrong["attempts_remaining"].as_i64()),
        (Some("pending"), Some(4))
    );
    let right: Value = app.check(US_TEST, "123456").await.json().await.unwrap();
    assert_eq!(right["status"], "approved");
    // Outside ALLOWED_COUNTRIES and a fixed line: a test number skips both rules.
    let response = app
        .post_json(
            "/v1/verifications",
            &json!({"phone_number": UK_LANDLINE_TEST, "channels": ["sms"]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let right: Value = app.check(UK_LANDLINE_TEST, "654321").await.json().await.unwrap();
    assert_eq!(right["status"], "approved");

    // A real number after them: once its SMS is out and every queue idle, it is the only
    // message the fake ever got, and the outbox never held a test number's job.
    let real = "+14155552671";
    app.start_ok(real).await;
    app.wait_for_code(real, 1).await;
    app.wait_until_idle().await;
    let to: Vec<String> = app.fake.messages().into_iter().map(|m| m.to).collect();
    assert_eq!(to, [real]);
    let rows: Vec<(bool, String)> = sqlx::query_as("SELECT test, delivery_status FROM verifications ORDER BY seq")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows.iter().filter(|(test, _)| *test).count(), 4);
    assert_eq!(test_starts().await - before, 4.0, "counted apart");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_test_number_setting_stops_the_api() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    for (value, says) in [
        ("+14155550100", "is not +number:code"),
        ("+14155550100:1234", "must have CODE_LENGTH (6) digits"),
    ] {
        let (mut api, log) = app.spawn_process("verify-api", &[("TEST_NUMBERS", value), ("API_LISTEN", "127.0.0.1:0")]);
        assert_eq!(api.wait().unwrap().code(), Some(2), "{value}");
        let written = std::fs::read_to_string(&log).unwrap();
        assert!(written.contains("TEST_NUMBERS") && written.contains(says), "{written}");
        assert!(!written.contains("4155550100"), "the number is masked: {written}");
    }
    app.stop().await;
}
