//! The guard across two API replicas: their counts add up in PostgreSQL, so a prefix whose
//! starts are split between them is judged on all of them, and a pause one replica raises is
//! enforced by the other (from its copy of the pauses, re-read every second).

use std::time::Duration;

use serde_json::json;
use verify_tests::harness::{API_KEY, spawn_app_with};

use super::{error_code, quick_guard, wait_for_pause};

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_count_one_prefix_together_and_both_enforce_its_pause() {
    // Six unchecked starts pause a prefix; each replica gets three. A worker sends them: while
    // the send queue holds starts back, the guard waits before judging them.
    let app = spawn_app_with(quick_guard("on")).await;
    let port = verify_tests::harness::free_port();
    let (listen, other) = (format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{port}"));
    let (_replica, log) = app.spawn_process("verify-api", &[("API_LISTEN", &listen)]);
    app.wait_until_ready(&other, &log).await;
    let start = |base: String, n: usize| {
        let http = app.http.clone();
        async move {
            http.post(format!("{base}/v1/verifications"))
                .bearer_auth(API_KEY)
                .json(&json!({"phone_number": format!("+1212555{}", 2100 + n)}))
                .send()
                .await
                .unwrap()
        }
    };
    for n in 0..6 {
        let base = if n % 2 == 0 {
            app.api_base.clone()
        } else {
            other.clone()
        };
        assert_eq!(start(base, n).await.status(), 202, "start {n}");
    }
    assert!(wait_for_pause(&app, "+1212", Duration::from_secs(40)).await);

    // Both replicas refuse the prefix within a few seconds of the pause.
    for base in [app.api_base.clone(), other.clone()] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut n = 10;
        loop {
            let (status, _, code) = error_code(start(base.clone(), n).await).await;
            if (status, code.as_str()) == (429, "suspected_pumping") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{base} still answers {status} {code}"
            );
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Raised once, however many replicas judged it.
    let pauses: Vec<(String, i32)> = sqlx::query_as("SELECT prefix, strikes FROM prefix_pauses")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(pauses, [("+1212".to_owned(), 1)]);
    app.stop().await;
}
