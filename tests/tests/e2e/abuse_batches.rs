//! The rate limits of concurrent requests, taken together by one transaction: each request
//! is still decided as if they came one after the other, so a burst gets exactly its limit.

use futures_util::future::join_all;
use verify_tests::harness::spawn_app_with;

use crate::abuse::{limited, refusal, start_from};

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_starts_from_one_address_get_exactly_its_limit() {
    let app = spawn_app_with(
        limited()
            .env("STARTS_PER_IP_PER_MINUTE", "7")
            .env("TRUSTED_PROXIES", "127.0.0.1/32"),
    )
    .await;
    let shared = &app;
    let starts = (0..40).map(|n| async move {
        let phone = format!("+1415555{:04}", 3000 + n);
        start_from(shared, &phone, "203.0.113.9").await.status().as_u16()
    });
    let statuses: Vec<u16> = join_all(starts).await;
    assert_eq!((count(&statuses, 202), count(&statuses, 429)), (7, 33), "{statuses:?}");
    // Another address has its own count.
    assert_eq!(start_from(&app, "+14155553999", "203.0.113.10").await.status(), 202);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 8, "a refused start stores nothing");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_starts_for_one_number_get_one_code_within_the_cooldown() {
    let app = spawn_app_with(limited().env("RESEND_COOLDOWN_SECONDS", "30")).await;
    let starts = (0..12).map(|_| app.start("+14155552671"));
    let responses = join_all(starts).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!((count(&statuses, 202), count(&statuses, 429)), (1, 11), "{statuses:?}");
    let refused = responses.into_iter().find(|r| r.status() == 429).unwrap();
    let (_, code, retry_after, message) = refusal(refused).await;
    assert_eq!(code, "rate_limited");
    assert!(retry_after.is_some_and(|s| (29..=30).contains(&s)), "{retry_after:?}");
    assert!(message.contains("resend cooldown"), "{message}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_prefix_ceiling_is_counted_per_second_and_holds_exactly() {
    let app = spawn_app_with(
        limited()
            .env("PREFIX_STARTS_PER_MINUTE", "150")
            .env("PREFIX_PAUSE_SECONDS", "120"),
    )
    .await;
    let shared = &app;
    let starts = (0..180).map(|n| async move {
        let phone = format!("+1415555{:04}", 4000 + n);
        shared.start(&phone).await.status().as_u16()
    });
    let statuses: Vec<u16> = join_all(starts).await;
    assert_eq!(
        (count(&statuses, 202), count(&statuses, 429)),
        (150, 30),
        "{statuses:?}"
    );
    // The prefix's row holds a count per second, not 150 times.
    let (entries, events): (i32, i64) = sqlx::query_as(
        "SELECT cardinality(times), (SELECT sum(c) FROM unnest(counts) c) FROM rate_limits WHERE key = 'start:prefix:+1415'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!((1..=61).contains(&entries), "{entries} entries");
    assert_eq!(events, 150);
    // The ceiling paused the prefix: its numbers are refused as suspected pumping.
    let (status, code, _, _) = refusal(app.start("+14155559999").await).await;
    assert_eq!((status, code.as_str()), (429, "suspected_pumping"));
    app.stop().await;
}
