//! What operators see: metrics scraped from both processes during a burst, queue views,
//! request ids, and the deploy files' metric names.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use verify_tests::fake_twilio::Fault;
use verify_tests::harness::{API_KEY, Options, Scrape, spawn_app, spawn_app_with};

/// Every `verify_…` metric name the deploy files (alert rules, dashboard) use.
fn metric_names_in_deploy_files() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut names = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("verify_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .fold(name.clone(), |n, s| n.strip_suffix(s).map_or(n.clone(), str::to_owned));
                if !names.contains(&base) {
                    names.push(base);
                }
            }
        }
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_scraped_during_a_burst_show_every_metric_with_sensible_values() {
    // Events on, so that their metrics are exported too.
    let app = spawn_app_with(Options::default().without_worker().with_events()).await;
    let mut service = app.spawn_service_processes(&[("WORKER_CONCURRENCY", "8")]).await;
    let (api_base, worker_base) = (service.api_base.clone(), service.worker_base.clone());
    let http = reqwest::Client::new();
    app.fake.set_latency(Duration::from_millis(150));
    app.fake
        .push_faults([Fault::Unavailable, Fault::InternalErrorAfterCreate]);

    // A burst of 120 starts, scraped while it is being sent.
    let phones: Vec<String> = (0..120).map(|i| format!("+1415555{:04}", 3000 + i)).collect();
    let starts = futures_util::stream::iter(phones.iter().cloned())
        .map(|phone| {
            let http = http.clone();
            let url = format!("{api_base}/v1/verifications");
            async move {
                http.post(url)
                    .bearer_auth(API_KEY)
                    .json(&json!({"phone_number": phone}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(starts.iter().all(|s| *s == 202));
    let during = Scrape::fetch(&http, &worker_base).await;
    assert!(
        during.value("verify_sends_in_flight", &[]).is_some_and(|n| n > 0.0),
        "sends in flight during the burst"
    );
    app.fake
        .wait_until(Duration::from_secs(60), "every SMS", |f| f.messages().len() >= 120)
        .await;

    for phone in &phones[..10] {
        let code = verify_tests::harness::code_in(&app.fake.messages_to(phone)[0].body).unwrap();
        let check = |c: &str| {
            http.post(format!("{api_base}/v1/verifications/check"))
                .bearer_auth(API_KEY)
                .json(&json!({"phone_number": phone, "code": c}))
                .send()
        };
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert_eq!(check(wrong).await.unwrap().status(), 200);
        assert_eq!(check(&code).await.unwrap().status(), 200);
    }
    app.fake
        .wait_until(Duration::from_secs(30), "callbacks", |f| f.callbacks_sent() >= 200)
        .await;
    // The worker acks each job just after its SMS, and the API refreshes its queue gauges
    // every 5 s: scrape until the worker holds no job and the gauges show the drained queue.
    let send_queue = [("queue", app.queue.as_str())];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (a, w) = loop {
        let a = Scrape::fetch(&http, &api_base).await;
        let w = Scrape::fetch(&http, &worker_base).await;
        let approvals = [("type", "verification.approved"), ("outcome", "delivered")];
        let worker_done = w.value("verify_sends_in_flight", &[]) == Some(0.0)
            && w.value("verify_jobs_total", &[("outcome", "submitted")]) >= Some(120.0)
            && w.value("verify_event_deliveries_total", &approvals) == Some(10.0);
        let gauges_drained = a.value("verify_queue_messages_ready", &send_queue) == Some(0.0)
            && a.value("verify_queue_consumers", &send_queue) == Some(1.0);
        if worker_done && gauges_drained {
            break (a, w);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker or the queue gauges never showed the drained queue:\n{}\n{}",
            a.text,
            w.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(a.value("verify_verifications_started_total", &[]), Some(120.0));
    assert_eq!(a.value("verify_checks_total", &[("outcome", "approved")]), Some(10.0));
    assert_eq!(a.value("verify_checks_total", &[("outcome", "wrong_code")]), Some(10.0));
    let route = [("route", "/v1/verifications"), ("method", "POST"), ("status", "202")];
    assert_eq!(a.value("verify_http_requests_total", &route), Some(120.0));
    let latency = [("route", "/v1/verifications"), ("method", "POST")];
    assert_eq!(
        a.value("verify_http_request_duration_seconds_count", &latency),
        Some(120.0)
    );
    assert!(
        a.value("verify_http_request_duration_seconds_sum", &latency)
            .is_some_and(|s| s > 0.0 && s < 120.0)
    );
    assert!(
        a.value("verify_delivery_callbacks_total", &[("status", "delivered")])
            .is_some_and(|n| n >= 100.0)
    );
    assert!(
        a.value("verify_time_to_delivered_seconds_count", &[])
            .is_some_and(|n| n >= 100.0)
    );
    assert_eq!(a.value("verify_queue_messages_ready", &send_queue), Some(0.0));
    assert_eq!(a.value("verify_queue_consumers", &send_queue), Some(1.0));
    assert!(
        a.value(
            "verify_queue_messages_ready",
            &[("queue", &format!("{}.retry.1s", app.queue))]
        )
        .is_some()
    );
    assert_eq!(a.value("verify_oldest_queued_age_seconds", &[]), Some(0.0));
    assert_eq!(a.value("verify_dead_letter_messages", &[]), Some(0.0));

    assert_eq!(
        w.value("verify_sms_send_attempts_total", &[("outcome", "submitted")]),
        Some(120.0)
    );
    assert_eq!(
        w.value(
            "verify_sms_send_attempts_total",
            &[("outcome", "retry"), ("twilio_code", "20503")]
        ),
        Some(1.0)
    );
    assert!(
        w.value(
            "verify_twilio_request_duration_seconds_count",
            &[("operation", "create")]
        )
        .is_some_and(|n| n >= 121.0)
    );
    assert!(
        w.value("verify_twilio_request_duration_seconds_count", &[("operation", "list")])
            .is_some_and(|n| n >= 1.0)
    );
    let p_create = w
        .value("verify_twilio_request_duration_seconds_sum", &[("operation", "create")])
        .unwrap()
        / w.value(
            "verify_twilio_request_duration_seconds_count",
            &[("operation", "create")],
        )
        .unwrap();
    assert!(
        (0.15..1.0).contains(&p_create),
        "mean Twilio latency {p_create} s (the fake adds 150 ms)"
    );
    assert_eq!(w.value("verify_time_to_submitted_seconds_count", &[]), Some(120.0));
    assert_eq!(w.value("verify_jobs_total", &[("outcome", "submitted")]), Some(120.0));
    assert_eq!(w.value("verify_sends_in_flight", &[]), Some(0.0));
    assert_eq!(w.value("verify_dead_letters_total", &[]), Some(0.0));
    // The test's own API runs an event relay too, and the two relays share the events
    // (SKIP LOCKED): how many this process published varies, so the counter is only
    // required to be there; the worker counts what reached the receiver: 120 submitted
    // updates and 10 approvals at least (sent and delivered follow).
    assert!(a.has_family("verify_events_published_total"));
    let updates = [("type", "delivery.updated"), ("outcome", "delivered")];
    assert!(
        w.value("verify_event_deliveries_total", &updates)
            .is_some_and(|n| n >= 120.0)
    );
    assert!(a.has_family("verify_events_waiting"));
    let approvals = [("type", "verification.approved"), ("outcome", "delivered")];
    assert_eq!(w.value("verify_event_deliveries_total", &approvals), Some(10.0));
    assert!(app.fake.events().iter().all(|e| e.verified));
    assert!(w.has_family("verify_event_delivery_duration_seconds"));

    // Every metric the alert rules and the dashboard name is exported by one of the two.
    let named = metric_names_in_deploy_files();
    assert!(named.len() >= 15, "{named:?}");
    let missing: Vec<_> = named.iter().filter(|n| !a.has_family(n) && !w.has_family(n)).collect();
    assert!(
        missing.is_empty(),
        "deploy files name metrics the service does not export: {missing:?}"
    );

    service.stop();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_view_and_stats_show_how_long_the_oldest_send_has_waited() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let oldest = app.start_ok("+14155552671").await;
    app.start_ok("+14155552672").await;
    // The oldest send has waited 10 s; the view must show that wait, not the newer one's.
    sqlx::query("UPDATE verifications SET created_at = created_at - interval '10 seconds' WHERE id = $1")
        .bind(oldest)
        .execute(&app.pool)
        .await
        .unwrap();
    app.wait_for_queue_depth(&app.queue, 2).await;
    let response = app
        .http
        .get(format!("{}/v1/ops/queues", app.api_base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let send = &body["queues"][0];
    assert_eq!(send["name"], app.queue);
    assert_eq!(send["messages_ready"], 2);
    let age = send["oldest_queued_age_seconds"].as_f64().unwrap();
    assert!((10.0..30.0).contains(&age), "{age}");
    let dead = body["queues"].as_array().unwrap().last().unwrap();
    assert_eq!(dead["oldest_queued_age_seconds"], Value::Null);

    let views = verify_worker::stats::read(&app.worker_config(), &app.pool)
        .await
        .unwrap();
    let mut table = Vec::new();
    verify_worker::stats::print(&views, &mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(
        table.contains(&app.queue) && table.contains("2 message(s) waiting"),
        "{table}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_id_is_sent_back_and_carried_into_the_job() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/v1/verifications", app.api_base))
        .bearer_auth(API_KEY)
        .header("x-request-id", "signup-7f3a")
        .json(&json!({"phone_number": "+14155552671"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "signup-7f3a");
    let id: uuid::Uuid = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.wait_for_field(id, "delivery_status", "delivered").await;
    let stored: Option<String> = sqlx::query_scalar("SELECT request_id FROM verifications WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("signup-7f3a"));
    // Without one, the API makes one up and still sends it back.
    let other = app.start("+14155552672").await;
    assert!(other.headers().get("x-request-id").is_some_and(|v| v.len() >= 32));
    app.stop().await;
}
