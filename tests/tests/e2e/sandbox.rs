//! The sandbox's JSON and stream (the page itself is driven in Chromium by
//! `tests/tests/sandbox`): numbers newest first, threads oldest first with faults, codes and
//! callbacks, calls with their code, the fault state, the API reached through the fake, and
//! the live stream.

use std::time::Duration;

use serde_json::{Value, json};
use verify_tests::harness::{API_KEY, TestApp, code_in, spawn_app};

async fn get(app: &TestApp, path: &str) -> Value {
    let answer = app
        .http
        .get(format!("{}{path}", app.fake.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "GET {path}");
    answer.json().await.unwrap()
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.http
        .post(format!("{}{path}", app.fake.base_url))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The thread of `number` once `done` holds for it (bounded poll: callbacks come after the SMS).
async fn thread_when(app: &TestApp, number: &str, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/sandbox/thread?number={}", number.replace('+', "%2B"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let thread = get(app, &path).await;
        if done(&thread) {
            return thread;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "thread never got there: {thread}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_come_newest_first_and_a_thread_shows_the_fault_then_the_code_and_its_callbacks() {
    let app = spawn_app().await;
    let (first, second) = ("+14155552671", "+14155552672");
    app.start_ok(first).await;
    app.wait_for_code(first, 1).await;
    assert_eq!(
        post(&app, "/_fake/faults", json!({"next": ["unavailable"]}))
            .await
            .status(),
        204
    );
    let faults = get(&app, "/_fake/faults").await;
    assert_eq!(faults["next"], json!(["unavailable"]), "{faults}");
    app.start_ok(second).await;
    let code = app.wait_for_code(second, 1).await;

    let numbers = get(&app, "/sandbox/numbers").await;
    let listed: Vec<&str> = numbers["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["number"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [second, first], "newest first: {numbers}");
    assert_eq!(numbers["total"], 2);
    assert_eq!(numbers["numbers"][0]["items"], 2, "the 503 and the SMS");
    let filtered = get(&app, "/sandbox/numbers?filter=2671").await;
    assert_eq!(filtered["numbers"][0]["number"], first);
    assert_eq!(filtered["total"], 1);

    let thread = thread_when(&app, second, |t| {
        t["items"][1]["callbacks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["status"] == "delivered"))
    })
    .await;
    let items = thread["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{thread}");
    assert_eq!(items[0]["kind"], "fault");
    assert_eq!(items[0]["answer"], "503 Service Unavailable");
    assert_eq!(items[0]["created"], false);
    assert_eq!(items[1]["kind"], "sms");
    assert_eq!(items[1]["code"], code.as_str());
    assert_eq!(Some(code), code_in(items[1]["text"].as_str().unwrap()));
    let callbacks = items[1]["callbacks"].as_array().unwrap();
    assert_eq!(callbacks[0], json!({"status": "sent", "http_status": 204}), "{thread}");
    assert_eq!(
        get(&app, "/_fake/faults").await["next"],
        json!([]),
        "the fault was used"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_shows_the_code_it_spoke() {
    let app = spawn_app().await;
    let phone = "+14155552673";
    let answer = app
        .post_json(
            "/v1/verifications",
            &json!({"phone_number": phone, "channels": ["call"]}),
        )
        .await;
    assert_eq!(answer.status(), 202);
    let thread = thread_when(&app, phone, |t| t["items"][0]["code"].is_string()).await;
    let call = &thread["items"][0];
    assert_eq!(call["kind"], "call");
    let code = call["code"].as_str().unwrap();
    let checked: Value = app.check(phone, code).await.json().await.unwrap();
    assert_eq!(
        checked["status"], "approved",
        "the code the thread shows is the one spoken"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_reached_through_the_fake_once_named_and_only_under_v1() {
    let app = spawn_app().await;
    let body = json!({"phone_number": "+14155552674"});
    let refused = post(&app, "/sandbox/api/v1/verifications", body.clone()).await;
    assert_eq!(refused.status(), 503);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "sandbox_api_unset");
    assert_eq!(app.fake.create_calls(), 0, "nothing started");

    app.fake.set_sandbox_api(&app.api_base, API_KEY);
    assert_eq!(post(&app, "/sandbox/api/healthz", json!({})).await.status(), 404);
    let started = post(&app, "/sandbox/api/v1/verifications", body).await;
    assert_eq!(started.status(), 202, "the fake adds the key");
    let started: Value = started.json().await.unwrap();
    let id = started["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.get_verification(id).await["phone_number"], "+14155552674");
    let queues = get(&app, "/sandbox/api/v1/ops/queues").await;
    assert_eq!(queues["queues"][0]["name"], app.queue.as_str(), "{queues}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_sends_a_change_at_once_and_after_each_change() {
    let app = spawn_app().await;
    let mut answer = app
        .http
        .get(format!("{}/sandbox/stream", app.fake.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let mut next_event = async || loop {
        if let Some(at) = seen.find("\n\n") {
            let event: String = seen.drain(..at + 2).collect();
            if event.contains("event: change") {
                return event;
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), answer.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    };
    let first = next_event().await;
    assert!(first.contains("data: 0"), "the state at once: {first:?}");
    app.fake
        .inject_message("+14155552675", "Your verification code is 123456");
    let second = next_event().await;
    assert!(second.contains("data: 1"), "one change later: {second:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fake_that_keeps_a_bounded_number_keeps_the_newest() {
    let fake = verify_tests::fake_twilio::FakeTwilio::start(verify_tests::fake_twilio::FakeConfig {
        kept: Some(100),
        ..Default::default()
    })
    .await;
    for i in 0..1_000 {
        fake.inject_message(&format!("+1415555{i:04}"), "Your verification code is 123456");
    }
    let kept = fake.messages();
    assert!((100..=112).contains(&kept.len()), "{} kept", kept.len());
    assert_eq!(kept.last().unwrap().to, "+14155550999", "the newest stays");
    assert_eq!(kept.first().unwrap().to, format!("+1415555{:04}", 1_000 - kept.len()));
}
