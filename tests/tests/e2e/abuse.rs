//! Abuse rules: rate limits (reached and reset), countries, number types, prefix guard.

use std::time::Duration;

use serde_json::{Value, json};
use verify_tests::harness::{API_KEY, Options, TestApp, spawn_app_with};

pub(crate) fn limited() -> Options {
    Options::default()
        .without_worker()
        .env("RATE_LIMITS", "on")
        .env("SMS_NUMBER_TYPES", "mobile,fixed_line_or_mobile")
        .env("RESEND_COOLDOWN_SECONDS", "0")
        .env("SENDS_PER_NUMBER", "0")
        .env("STARTS_PER_IP_PER_MINUTE", "0")
        .env("CHECKS_PER_IP_PER_MINUTE", "0")
        .env("WRONG_CODES_PER_NUMBER_PER_DAY", "0")
        .env("PREFIX_STARTS_PER_MINUTE", "0")
}

pub(crate) async fn refusal(response: reqwest::Response) -> (u16, String, Option<u64>, String) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body: Value = response.json().await.unwrap();
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    (
        status,
        code,
        retry_after,
        body["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

async fn rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Starts for `phone` every 50 ms while they are refused with 429 (a refused start uses up
/// nothing), until one is accepted; returns how long after `since` that was. 10 s at most.
async fn start_when_admitted(app: &TestApp, phone: &str, since: tokio::time::Instant) -> Duration {
    let deadline = since + Duration::from_secs(10);
    loop {
        let response = app.start(phone).await;
        match response.status().as_u16() {
            202 => return since.elapsed(),
            429 => assert!(
                tokio::time::Instant::now() < deadline,
                "{phone} still refused 10 s later"
            ),
            other => panic!("a start for {phone} answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn start_from(app: &TestApp, phone: &str, forwarded_for: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/verifications", app.api_base))
        .bearer_auth(API_KEY)
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"phone_number": phone}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_per_number_are_limited_within_the_window_then_allowed_again() {
    let app = spawn_app_with(
        limited()
            .env("SENDS_PER_NUMBER", "3")
            .env("SENDS_PER_NUMBER_WINDOW_SECONDS", "2"),
    )
    .await;
    let first = tokio::time::Instant::now();
    for _ in 0..3 {
        app.start_ok("+14155552671").await;
    }
    let (status, code, retry_after, message) = refusal(app.start("+14155552671").await).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert!(retry_after.is_some_and(|s| (1..=2).contains(&s)), "{retry_after:?}");
    assert!(
        message.contains("too many codes for this number: at most 3 per 2 s"),
        "{message}"
    );
    assert_eq!(rows(&app).await, 3, "a refused start stores nothing");
    // Another number is not affected.
    app.start_ok("+14155552672").await;
    // Admitted again once the first start has left the window, not before.
    let admitted = start_when_admitted(&app, "+14155552671", first).await;
    assert!(
        admitted >= Duration::from_millis(1900),
        "admitted {admitted:?} after the first start, within the 2 s window"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_start_within_the_cooldown_is_refused() {
    let app = spawn_app_with(limited().env("RESEND_COOLDOWN_SECONDS", "1")).await;
    let first = tokio::time::Instant::now();
    app.start_ok("+14155552671").await;
    let (status, _, retry_after, message) = refusal(app.start("+14155552671").await).await;
    assert_eq!(status, 429);
    assert_eq!(retry_after, Some(1));
    assert!(message.starts_with("resend cooldown"), "{message}");
    let admitted = start_when_admitted(&app, "+14155552671", first).await;
    assert!(
        admitted >= Duration::from_millis(900),
        "admitted {admitted:?} after the first start, within the 1 s cooldown"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_per_ip_are_limited_and_forwarded_addresses_count_only_behind_a_trusted_proxy() {
    let app = spawn_app_with(limited().env("STARTS_PER_IP_PER_MINUTE", "2")).await;
    assert_eq!(start_from(&app, "+14155552671", "203.0.113.1").await.status(), 202);
    assert_eq!(start_from(&app, "+14155552672", "203.0.113.2").await.status(), 202);
    // The header is not believed from an untrusted peer: all three came from 127.0.0.1.
    let (status, _, _, message) = refusal(start_from(&app, "+14155552673", "203.0.113.3").await).await;
    assert_eq!(status, 429);
    assert!(
        message.contains("from this IP address: at most 2 per minute"),
        "{message}"
    );
    app.stop().await;

    let app = spawn_app_with(
        limited()
            .env("STARTS_PER_IP_PER_MINUTE", "2")
            .env("TRUSTED_PROXIES", "127.0.0.1/32"),
    )
    .await;
    for (n, client) in ["203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.2"]
        .iter()
        .enumerate()
    {
        assert_eq!(start_from(&app, &format!("+1415555267{n}"), client).await.status(), 202);
    }
    assert_eq!(start_from(&app, "+14155552679", "203.0.113.1").await.status(), 429);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_per_ip_are_limited() {
    let app = spawn_app_with(limited().env("CHECKS_PER_IP_PER_MINUTE", "3")).await;
    app.start_ok("+14155552671").await;
    for _ in 0..3 {
        assert_eq!(app.check("+14155552671", "000000").await.status(), 200);
    }
    let (status, _, retry_after, message) = refusal(app.check("+14155552671", "000000").await).await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some_and(|s| s <= 60));
    assert!(message.contains("too many checks from this IP address"), "{message}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_per_number_are_limited_across_verifications_and_right_codes_do_not_count() {
    let mut app = spawn_app_with(limited().env("WRONG_CODES_PER_NUMBER_PER_DAY", "3")).await;
    app.start_worker().await;
    let phone = "+14155552671";
    app.start_ok(phone).await;
    let code = app.wait_for_code(phone, 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(app.check(phone, wrong).await.status(), 200);
    assert_eq!(app.check(phone, wrong).await.status(), 200);
    let approved: Value = app.check(phone, &code).await.json().await.unwrap();
    assert_eq!(approved["status"], "approved");
    // A new verification of the same number: one wrong code left for today.
    app.start_ok(phone).await;
    let code = app.wait_for_code(phone, 2).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(app.check(phone, wrong).await.status(), 200);
    let (status, _, retry_after, message) = refusal(app.check(phone, &code).await).await;
    assert_eq!(
        status, 429,
        "even the right code is refused once the day's wrong codes are used"
    );
    assert!(retry_after.is_some_and(|s| s > 80_000), "{retry_after:?}");
    assert!(
        message.contains("too many wrong codes for this number: at most 3 per 24 h"),
        "{message}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_guesses_cannot_overrun_the_daily_wrong_code_limit() {
    let app = spawn_app_with(
        limited()
            .env("WRONG_CODES_PER_NUMBER_PER_DAY", "9")
            .env("MAX_CHECK_ATTEMPTS", "20"),
    )
    .await;
    app.start_ok("+14155552671").await;
    let guesses = (0..30).map(|i| app.check("+14155552671", if i % 2 == 0 { "000000" } else { "999999" }));
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    // One of the two guesses may be the right code; the other 29 or 30 are wrong.
    let answered = statuses.iter().filter(|&&s| s == 200).count();
    assert!((9..=10).contains(&answered), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 30 - answered);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_outside_the_allowed_countries_get_403_and_no_sms() {
    let mut app = spawn_app_with(limited().env("ALLOWED_COUNTRIES", "us,FR")).await;
    app.start_worker().await;
    app.start_ok("+14155552671").await;
    app.start_ok("+33612345678").await;
    let (status, code, _, message) = refusal(app.start("+4915112345678").await).await;
    assert_eq!((status, code.as_str()), (403, "country_not_allowed"));
    assert!(message.contains("DE"), "{message}");
    app.wait_for_code("+33612345678", 1).await;
    assert!(app.fake.messages_to("+4915112345678").is_empty());
    assert_eq!(rows(&app).await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_numbers_that_can_receive_sms_are_accepted() {
    let app = spawn_app_with(limited()).await;
    for (number, kind) in [
        ("+18005551234", "toll free"),
        ("+19005551234", "premium rate"),
        ("+442071838750", "fixed line"),
    ] {
        let (status, code, _, message) = refusal(app.start(number).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_phone_number"), "{number}");
        assert!(message.contains(kind), "{number}: {message}");
    }
    app.start_ok("+33612345678").await;
    assert_eq!(rows(&app).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_to_one_prefix_pauses_that_prefix_only() {
    let app = spawn_app_with(
        limited()
            .env("PREFIX_STARTS_PER_MINUTE", "5")
            .env("PREFIX_PAUSE_SECONDS", "120"),
    )
    .await;
    for n in 0..5 {
        app.start_ok(&format!("+1415555200{n}")).await;
    }
    let (status, code, retry_after, message) = refusal(app.start("+14155552005").await).await;
    assert_eq!((status, code.as_str()), (429, "suspected_pumping"));
    assert_eq!(retry_after, Some(120));
    assert!(
        message.contains("numbers starting +1415; that prefix is paused"),
        "{message}"
    );
    let paused: i64 = sqlx::query_scalar("SELECT count(*) FROM prefix_pauses WHERE prefix = '+1415' AND until > now()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(paused, 1);
    // Still paused for any number of the prefix; other prefixes go on.
    assert_eq!(app.start("+14155559999").await.status(), 429);
    app.start_ok("+12025550123").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_rate_limits_off_only_the_country_and_type_rules_apply() {
    let app = spawn_app_with(
        Options::default()
            .without_worker()
            .env("RATE_LIMITS", "off")
            .env("ALLOWED_COUNTRIES", "US")
            .env("SMS_NUMBER_TYPES", "mobile,fixed_line_or_mobile"),
    )
    .await;
    for _ in 0..8 {
        app.start_ok("+14155552671").await;
    }
    assert_eq!(app.start("+33612345678").await.status(), 403);
    assert_eq!(app.start("+18005551234").await.status(), 400);
    app.stop().await;
}
