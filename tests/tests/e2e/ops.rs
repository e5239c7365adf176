//! Health, readiness, queue depth, dead letters, and behaviour when the broker is away.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use serde_json::Value;
use verify_tests::harness::{API_KEY, Options, amqp_url, sibling_binary, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness_answer_when_everything_is_up() {
    let app = spawn_app().await;
    let healthz = app.http.get(format!("{}/healthz", app.api_base)).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = app.http.get(format!("{}/readyz", app.api_base)).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    let body: Value = readyz.json().await.unwrap();
    let node = common::broker::node_label(&amqp_url());
    assert_eq!(
        body,
        serde_json::json!({"database": "up", "broker": "up", "broker_node": node})
    );
    let metrics = app.http.get(format!("{}/metrics", app.api_base)).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_and_the_worker_open_their_connections_before_taking_work() {
    let app = spawn_app().await;
    // Right after start-up, before any request: the API's and the worker's pools are full
    // (DATABASE_MAX_CONNECTIONS = 8 each in the tests), besides this test's own connections.
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
        .bind(&app.database_name)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let own = i64::from(app.pool.size());
    assert!(
        open - own >= 16,
        "{} connections open besides the test's {own}",
        open - own
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_view_lists_the_send_and_dead_letter_queues() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    app.start_ok("+14155552671").await;
    app.start_ok("+14155552672").await;
    // A 202 means stored with its job; the job reaches the queue moments later.
    app.wait_for_queue_depth(&app.queue, 2).await;
    let response = app
        .http
        .get(format!("{}/v1/ops/queues", app.api_base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let queues = body["queues"].as_array().unwrap();
    assert_eq!(queues[0]["name"], app.queue);
    assert_eq!(queues[0]["messages_ready"], 2);
    assert_eq!(queues[0]["consumers"], 0);
    let names: Vec<&str> = queues.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, app.topology().queues());
    assert!(names.contains(&format!("{}.retry.30s", app.queue).as_str()));
    assert_eq!(queues.last().unwrap()["messages_ready"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_while_the_broker_is_unreachable_answers_503_and_leaves_nothing() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let options = Options::default()
        .without_worker()
        .env("AMQP_URL", format!("amqp://guest:guest@{closed}/%2f"))
        .env("PUBLISH_TIMEOUT_MS", "1000");
    let app = spawn_app_with(options).await;
    let started = std::time::Instant::now();
    let response = app.start("+14155552671").await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered within the bounded wait"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "no verification is left pending without a job");
    let readyz = app.http.get(format!("{}/readyz", app.api_base)).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    assert_eq!(readyz.json::<Value>().await.unwrap()["broker"], "down");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_message_is_dead_lettered_and_does_not_block_the_queue() {
    let mut app = spawn_app_with(Options::default().without_worker()).await;
    let conn = common::broker::connect(&amqp_url(), "verify-tests").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .basic_publish(
            "".into(),
            app.queue.as_str().into(),
            BasicPublishOptions::default(),
            b"{not a job",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    let id = app.start_ok("+14155552671").await;
    app.start_worker().await;
    app.wait_for_field(id, "delivery_status", "delivered").await;
    let dead = format!("{}.dead", app.queue);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.queue_depth(&dead).await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the malformed message never reached {dead}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.queue_depth(&app.queue).await, 0);
    drop(conn.close(200, "ok".into()).await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_list_naming_a_dead_node_first_still_serves_and_readiness_names_the_node_in_use() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut options = Options::default().without_worker();
    options.broker.0 = format!("amqp://guest:guest@{closed}/%2f, {}", amqp_url());
    let app = spawn_app_with(options).await;
    let mut service = app.spawn_service_processes(&[]).await;
    let live = common::broker::node_label(&amqp_url());
    for base in [&app.api_base, &service.api_base, &service.worker_base] {
        let readyz = app.http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(readyz.status(), 200, "{base}");
        assert_eq!(readyz.json::<Value>().await.unwrap()["broker_node"], live, "{base}");
    }
    let answer = app
        .http
        .post(format!("{}/v1/verifications", service.api_base))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"phone_number": "+14155552671"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    app.wait_for_code("+14155552671", 1).await;
    let log = std::fs::read_to_string(&service.worker_log).unwrap();
    assert!(
        log.contains("did not accept a connection") && log.contains(&closed.to_string()),
        "the worker logs the node it passed over"
    );
    assert!(!log.contains("guest:guest"), "no URL (with its password) in the log");
    let stats = std::process::Command::new(sibling_binary("verify-worker"))
        .arg("stats")
        .env_clear()
        .envs(app.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(stats.status.success(), "{}", String::from_utf8_lossy(&stats.stderr));
    assert!(String::from_utf8_lossy(&stats.stdout).contains(&app.queue));
    service.stop();
    app.stop().await;
}
