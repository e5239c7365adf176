//! The pumping guard with small thresholds (the process tests in `tests/pumping` use the
//! defaults at full scale), and the daily SMS budget: exhausted, shared by two replicas,
//! refused when the database cannot count.

mod budget;
mod replicas;

use std::time::Duration;

use serde_json::Value;
use verify_tests::harness::{Options, Scrape, TestApp, spawn_app_with};

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
