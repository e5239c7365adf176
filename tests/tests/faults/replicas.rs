//! Two `verify-api` replicas taking starts for the same numbers at once.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;
use verify_tests::harness::{API_KEY, Options, Process, TestApp, code_in, spawn_app_with};

use crate::serial;

/// A second API process beside the test's own, on a port of its own (killed when dropped).
struct Replica {
    _process: Process,
    base: String,
}

async fn spawn_replica(app: &TestApp) -> Replica {
    let port = verify_tests::harness::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let (child, log) = app.spawn_process("verify-api", &[("API_LISTEN", &listen)]);
    // Built first, so the process is killed if it never becomes ready.
    let replica = Replica { _process: child, base };
    app.wait_until_ready(&replica.base, &log).await;
    replica
}

/// Starts for `number` at the API at `base`: the id of the 202.
async fn start_at(app: &TestApp, base: &str, number: &str) -> Uuid {
    let response = app
        .http
        .post(format!("{base}/v1/verifications"))
        .bearer_auth(API_KEY)
        .json(&json!({"phone_number": number}))
        .send()
        .await
        .expect("calling an API replica");
    assert_eq!(response.status(), 202, "start for {number} at {base}");
    let body: Value = response.json().await.expect("start body");
    body["id"].as_str().and_then(|s| s.parse().ok()).expect("an id")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault test: run with --include-ignored"]
async fn concurrent_starts_on_two_replicas_leave_one_pending_code_per_number() {
    let _serial = serial().await;
    // Enough attempts to try every superseded code that went out before the right one.
    let options = Options::default().env("MAX_CHECK_ATTEMPTS", "20");
    let app = spawn_app_with(options).await;
    let replica = spawn_replica(&app).await;
    let bases = [app.api_base.clone(), replica.base.clone()];

    for round in 0..5 {
        app.watch.step(&format!(
            "round {round}: 12 concurrent starts per number on two replicas"
        ));
        let numbers: Vec<String> = (0..25).map(|i| format!("+1415556{round}{i:03}")).collect();
        let starts: Vec<(String, usize)> = (0..12)
            .flat_map(|k| numbers.iter().map(move |n| (n.clone(), k % 2)))
            .collect();
        let ids: Vec<Uuid> = futures_util::stream::iter(starts)
            .map(|(number, replica)| {
                let (app, base) = (&app, bases[replica].clone());
                async move { start_at(app, &base, &number).await }
            })
            .buffer_unordered(300)
            .collect()
            .await;
        assert_eq!(ids.len(), 300);

        let pending: Vec<(String, Uuid, i64)> = sqlx::query_as(
            "SELECT phone_number, id, seq FROM verifications \
             WHERE phone_number = ANY($1) AND status = 'pending' ORDER BY phone_number",
        )
        .bind(&numbers)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        let per_number: HashMap<&str, usize> = pending.iter().fold(HashMap::new(), |mut m, (n, _, _)| {
            *m.entry(n.as_str()).or_default() += 1;
            m
        });
        assert!(
            numbers.iter().all(|n| per_number.get(n.as_str()) == Some(&1)),
            "round {round}: pending verifications per number: {per_number:?}"
        );
        // The pending one is the newest of its number: every other start was superseded.
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM verifications v WHERE phone_number = ANY($1) AND status <> 'canceled' \
             AND status <> 'pending'",
        )
        .bind(&numbers)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(others, 0, "round {round}: every start but the pending one is canceled");

        app.watch
            .step(&format!("round {round}: only the pending code approves"));
        for (number, id, _) in &pending {
            let sid = wait_for_sid(&app, *id).await;
            let sent = app.fake.messages_to(number);
            let right = sent
                .iter()
                .find(|m| m.sid == sid)
                .and_then(|m| code_in(&m.body))
                .expect("the pending verification's SMS");
            for wrong in sent.iter().filter_map(|m| code_in(&m.body)).filter(|c| *c != right) {
                let answer: Value = app.check(number, &wrong).await.json().await.unwrap();
                assert_eq!(answer["valid"], false, "a superseded code of {number} was accepted");
            }
            let answer: Value = app.check(number, &right).await.json().await.unwrap();
            assert_eq!(answer["valid"], true, "{number}: {answer}");
            assert_eq!(answer["id"], id.to_string());
        }
    }
}

/// Waits until the verification's SMS was submitted; its message sid.
async fn wait_for_sid(app: &TestApp, id: Uuid) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let sid: Option<String> = sqlx::query_scalar("SELECT provider_message_sid FROM verifications WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if let Some(sid) = sid {
            return sid;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id} was never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
