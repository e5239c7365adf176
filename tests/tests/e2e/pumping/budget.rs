//! The daily SMS budget: refused past it per country, shared exactly by two replicas, and
//! refused when the database cannot count it.

use std::time::Duration;

use verify_tests::harness::{API_KEY, Options, spawn_app_with};

use super::{error_code, scrape, stored};

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
