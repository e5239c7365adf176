//! The pumping guard with small thresholds (the process tests in `tests/pumping` use the
//! defaults at full scale), and the daily SMS budget: exhausted, shared by two replicas,
//! refused when the database cannot count.

use std::time::Duration;

use serde_json::Value;
use verify_tests::harness::{API_KEY, Options, Scrape, TestApp, spawn_app_with};

/// Thresholds a dozen starts can trip: judged every second, matured after 10 s.
fn quick_guard(mode: &str) -> Options {
    Options::default()
        .env("PUMPING_GUARD", mode)
        .env("PUMPING_WINDOW_SECONDS", "60")
        .env("PUMPING_MATURITY_SECONDS", "10")
        .env("PUMPING_MIN_STARTS", "6")
        .env("PUMPING_MIN_MATURED", "6")
        .env("PUMPING_EVALUATE_SECONDS", "1")
        .env("PREFIX_PAUSE_SECONDS", "300")
}

/// The pause row of `prefix`, once there is one (`enforced`), within `limit`.
async fn wait_for_pause(app: &TestApp, prefix: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let row: Option<bool> = sqlx::query_scalar("SELECT enforced FROM prefix_pauses WHERE prefix = $1")
            .bind(prefix)
            .fetch_optional(&app.pool)
            .await
            .unwrap();
        if let Some(enforced) = row {
            return enforced;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{prefix} not flagged within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    Scrape::fetch(&app.http, &app.api_base).await
}

async fn error_code(response: reqwest::Response) -> (u16, Option<u64>, String) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body: Value = response.json().await.unwrap();
    (
        status,
        retry_after,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn stored(app: &TestApp, number: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM verifications WHERE phone_number = $1")
        .bind(number)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Starts 8 numbers of +1305 and checks each code, then starts 8 numbers of +1212 that are
/// never checked: +1212 is paused, +1305 (judged by the same evaluations) is not.
async fn converting_then_pumped(app: &TestApp) {
    for n in 0..8 {
        let number = format!("+1305555{}", 2100 + n);
        app.start_ok(&number).await;
        let code = app.wait_for_code(&number, 1).await;
        assert_eq!(app.check(&number, &code).await.status(), 200);
    }
    for n in 0..8 {
        app.start_ok(&format!("+1212555{}", 2100 + n)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unchecked_starts_pause_their_prefix_and_checked_ones_do_not() {
    let app = spawn_app_with(quick_guard("on")).await;
    converting_then_pumped(&app).await;
    assert!(wait_for_pause(&app, "+1212", Duration::from_secs(40)).await);

    let (status, retry_after, code) = error_code(app.start("+12125552199").await).await;
    assert_eq!((status, code.as_str()), (429, "suspected_pumping"));
    assert!(retry_after.is_some_and(|s| (290..=300).contains(&s)), "{retry_after:?}");
    assert_eq!(stored(&app, "+12125552199").await, 0, "a refused start stores nothing");
    // The evaluation that paused +1212 judged +1305's older, approved starts too.
    let pauses: Vec<String> = sqlx::query_scalar("SELECT prefix FROM prefix_pauses")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(pauses, ["+1212"]);
    app.start_ok("+13055552199").await;

    let m = scrape(&app).await;
    assert!(m.value("verify_pumping_suspected_total", &[("mode", "on")]) >= Some(1.0));
    assert!(m.value("verify_starts_refused_total", &[("reason", "suspected_pumping")]) >= Some(1.0));
    assert!(
        m.value("verify_conversion_ratio", &[("country", "US")]).is_some(),
        "{}",
        m.text
    );
    assert!(m.value("verify_prefix_recent_starts", &[("prefix", "+1305")]) >= Some(8.0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_flags_without_refusing_and_the_safe_list_is_never_flagged() {
    let app = spawn_app_with(quick_guard("monitor").env("PUMPING_SAFE_PREFIXES", "+1718")).await;
    // The safe prefix goes first: by the time +1212 is flagged, it was judged too.
    for n in 0..8 {
        app.start_ok(&format!("+1718555{}", 2100 + n)).await;
    }
    converting_then_pumped(&app).await;
    assert!(!wait_for_pause(&app, "+1212", Duration::from_secs(40)).await);
    app.start_ok("+12125552199").await;
    let flagged: Vec<String> = sqlx::query_scalar("SELECT prefix FROM prefix_pauses")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(flagged, ["+1212"]);
    let m = scrape(&app).await;
    assert!(m.value("verify_pumping_suspected_total", &[("mode", "monitor")]) >= Some(1.0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_budget_refuses_past_it_per_country_and_uses_up_nothing() {
    let app = spawn_app_with(
        Options::default()
            .without_worker()
            .env("DAILY_SMS_BUDGET", "US:3,*:1")
            .env("PUMPING_EVALUATE_SECONDS", "1"),
    )
    .await;
    for n in 0..3 {
        app.start_ok(&format!("+1415555{}", 2100 + n)).await;
    }
    let (status, retry_after, code) = error_code(app.start("+14155552199").await).await;
    assert_eq!((status, code.as_str()), (429, "budget_exhausted"));
    assert!(
        retry_after.is_some_and(|s| (1..=86_400).contains(&s)),
        "{retry_after:?}"
    );
    assert_eq!(stored(&app, "+14155552199").await, 0);
    // Other countries have their own budget (`*`: one each).
    app.start_ok("+447400123456").await;
    assert_eq!(error_code(app.start("+447400123457").await).await.2, "budget_exhausted");
    app.start_ok("+33612345678").await;
    let used: Vec<(String, i32)> = sqlx::query_as("SELECT country, used FROM sms_budgets ORDER BY country")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(used, [("FR".into(), 1), ("GB".into(), 1), ("US".into(), 3)]);

    // The guard's evaluation shows the use, against the limits.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let m = loop {
        let m = scrape(&app).await;
        if m.value("verify_sms_budget_used", &[("country", "US")]) == Some(3.0) {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no budget metric: {}", m.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(m.value("verify_sms_budget_limit", &[("country", "*")]), Some(1.0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_one_budget_exactly() {
    let app = spawn_app_with(Options::default().without_worker().env("DAILY_SMS_BUDGET", "US:15")).await;
    let port = verify_tests::harness::free_port();
    let (listen, base) = (format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{port}"));
    let (_replica, log) = app.spawn_process("verify-api", &[("API_LISTEN", &listen)]);
    app.wait_until_ready(&base, &log).await;

    let answers = futures_util::future::join_all((0..40).map(|n| {
        let url = if n % 2 == 0 { &app.api_base } else { &base };
        app.http
            .post(format!("{url}/v1/verifications"))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({"phone_number": format!("+1415555{}", 2100 + n)}))
            .send()
    }))
    .await;
    let statuses: Vec<u16> = answers.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((accepted, refused), (15, 25), "{statuses:?}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 15);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_the_database_cannot_count_refuses_the_start() {
    let app = spawn_app_with(Options::default().without_worker().env("DAILY_SMS_BUDGET", "US:100")).await;
    app.start_ok("+14155552100").await;
    sqlx::query("ALTER TABLE sms_budgets RENAME TO sms_budgets_away")
        .execute(&app.pool)
        .await
        .unwrap();
    let status = app.start("+14155552101").await.status().as_u16();
    assert!(
        status >= 500,
        "a start answered {status} while its budget could not be counted"
    );
    assert_eq!(stored(&app, "+14155552101").await, 0);
    assert_eq!(app.fake.messages_to("+14155552101").len(), 0);
    sqlx::query("ALTER TABLE sms_budgets_away RENAME TO sms_budgets")
        .execute(&app.pool)
        .await
        .unwrap();
    app.start_ok("+14155552101").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hard_ceiling_never_pauses_a_safe_prefix() {
    let app = spawn_app_with(
        Options::default()
            .without_worker()
            .env("RATE_LIMITS", "on")
            .env("PREFIX_STARTS_PER_MINUTE", "5")
            .env("PUMPING_SAFE_PREFIXES", "+1415"),
    )
    .await;
    for n in 0..8 {
        app.start_ok(&format!("+1415555{}", 2100 + n)).await;
    }
    // The same burst to a prefix not on the list is stopped at the ceiling.
    for n in 0..5 {
        app.start_ok(&format!("+1212555{}", 2100 + n)).await;
    }
    assert_eq!(error_code(app.start("+12125552199").await).await.2, "suspected_pumping");
    let paused: Vec<String> = sqlx::query_scalar("SELECT prefix FROM prefix_pauses")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(paused, ["+1212"]);
    app.stop().await;
}
