//! A three-node RabbitMQ cluster (`scripts/rabbitmq-cluster`) under the service: the node that
//! leads the send queue is killed during a burst, and a follower is stopped and started.
//!
//! The cluster runs beside the machine's own RabbitMQ, on ports 5681-5683; each test starts
//! it, and stops it and removes its data when it passes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;
use verify_tests::harness::{API_KEY, Options, ServiceProcesses, TestApp, spawn_app_with};

use crate::{assert_one_sms_each, numbers, serial, wait_for_empty_queues, wait_until_settled};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/rabbitmq-cluster")
}

/// Runs the cluster script with `args`; returns what it printed.
async fn cluster(args: &[&str]) -> String {
    let run = tokio::process::Command::new(script())
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .unwrap_or_else(|_| panic!("`rabbitmq-cluster {}` took more than 240 s", args.join(" ")))
        .expect("running scripts/rabbitmq-cluster");
    assert!(
        output.status.success(),
        "`rabbitmq-cluster {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A fresh cluster and a service on it: the API and two workers as processes, every one
/// given the cluster's three nodes as `AMQP_URL`.
async fn service_on_a_cluster() -> (TestApp, ServiceProcesses, verify_tests::harness::Process) {
    cluster(&["stop"]).await;
    cluster(&["start"]).await;
    let urls = cluster(&["urls"]).await;
    let ctl = format!("{} ctl", script().display());
    let mut options = Options::default()
        .without_worker()
        .env("WORKER_CONCURRENCY", "32")
        // Jobs whose confirm the lost node never sent are published by the relay soon.
        .env("OUTBOX_RELAY_AFTER_SECONDS", "12");
    // Not this test's subject, and they compete with the starts for the API's connections.
    options.fake.callbacks = false;
    options.broker = (urls, ctl);
    let app = spawn_app_with(options).await;
    app.fake.set_latency(Duration::from_millis(40));
    let service = app.spawn_service_processes(&[]).await;
    let second = app.spawn_worker_process();
    app.wait_for_consumers(2).await;
    // The send queue, its retry queues and the dead-letter queue: quorum queues with a replica
    // on each of the three nodes.
    let rows = cluster(&[
        "ctl",
        "-q",
        "list_queues",
        "--no-table-headers",
        "name",
        "type",
        "members",
    ])
    .await;
    for queue in app.topology().queues() {
        let row = rows
            .lines()
            .find(|row| row.split('\t').next() == Some(queue.as_str()))
            .unwrap_or_else(|| panic!("{queue} is not listed: {rows}"));
        assert!(row.contains("\tquorum\t"), "{row}");
        assert_eq!(row.matches("@localhost").count(), 3, "a replica on each node: {row}");
    }
    (app, service, second)
}

/// The node that leads `queue` (`rabbit-cN@localhost`).
async fn leader_of(queue: &str) -> String {
    let rows = cluster(&["ctl", "-q", "list_queues", "--no-table-headers", "name", "leader"]).await;
    rows.lines()
        .filter_map(|row| row.split_once('\t'))
        .find(|(name, _)| name.trim() == queue)
        .map(|(_, leader)| leader.trim().to_owned())
        .unwrap_or_else(|| panic!("no leader listed for {queue}: {rows}"))
}

/// `/readyz` of a process, as JSON, with its status.
async fn readyz(app: &TestApp, base: &str) -> (u16, Value) {
    match app
        .http
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(answer) => (answer.status().as_u16(), answer.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

/// Waits (60 s at most) until every process is ready through a node other than `not`.
async fn wait_until_ready_elsewhere(app: &TestApp, bases: &[&str], not: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for base in bases {
        loop {
            let (status, body) = readyz(app, base).await;
            let node = body["broker_node"].as_str().unwrap_or("");
            if status == 200 && !node.is_empty() && node != not {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{base} never became ready through another node than {not}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One answer of a start: the number, the id of a 202 or the status (0: no answer), and how
/// long it took.
type Answer = (String, Result<Uuid, u16>, Duration);

/// Starts for `phones` at `concurrency` against the API at `base`, counting answers in `done`.
async fn burst(app: &TestApp, base: &str, phones: &[String], concurrency: usize, done: &AtomicUsize) -> Vec<Answer> {
    futures_util::stream::iter(phones.iter().cloned())
        .map(|phone| async move {
            let began = std::time::Instant::now();
            let answer = app
                .http
                .post(format!("{base}/v1/verifications"))
                .bearer_auth(API_KEY)
                .json(&json!({"phone_number": phone}))
                .timeout(Duration::from_secs(15))
                .send()
                .await;
            let result = match answer {
                Ok(answer) if answer.status() == 202 => {
                    let body: Value = answer.json().await.expect("start body");
                    Ok(body["id"].as_str().and_then(|s| s.parse().ok()).expect("id"))
                }
                Ok(answer) => Err(answer.status().as_u16()),
                Err(_) => Err(0),
            };
            done.fetch_add(1, Ordering::Relaxed);
            (phone, result, began.elapsed())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Each 202 was sent exactly once, and no number (of a 503 either) was texted twice.
async fn assert_each_accepted_sent_once(app: &TestApp, answers: &[Answer]) {
    let accepted: Vec<(String, Uuid)> = answers
        .iter()
        .filter_map(|(phone, result, _)| result.ok().map(|id| (phone.clone(), id)))
        .collect();
    let ids: Vec<Uuid> = accepted.iter().map(|(_, id)| *id).collect();
    let statuses = wait_until_settled(app, &ids, Duration::from_secs(180)).await;
    assert!(
        statuses
            .iter()
            .all(|s| ["submitted", "sent", "delivered"].contains(&s.as_str())),
        "every accepted start was sent"
    );
    wait_for_empty_queues(app).await;
    let phones: Vec<String> = accepted.into_iter().map(|(phone, _)| phone).collect();
    assert_one_sms_each(app, &phones);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault test: run with --include-ignored"]
async fn the_send_queues_leader_killed_mid_burst_loses_no_start_and_sends_none_twice() {
    let _serial = serial().await;
    let (app, mut service, mut second) = service_on_a_cluster().await;
    let leader = leader_of(&app.queue).await;
    let (status, body) = readyz(&app, &service.api_base).await;
    assert_eq!(status, 200, "{body}");
    let first_node = body["broker_node"].as_str().expect("the node in use").to_owned();
    assert_eq!(first_node, "127.0.0.1:5681", "the first node of the list answers");
    app.watch
        .step("a burst of 2,000 starts, the send queue's leader killed in the middle");
    let phones = numbers(2000);
    let done = AtomicUsize::new(0);
    let killer = async {
        while done.load(Ordering::Relaxed) < 600 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pid = cluster(&["pid", &leader]).await;
        let killed = std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(killed.success(), "kill -9 {pid} ({leader})");
        done.load(Ordering::Relaxed)
    };
    let (answers, killed_at) = tokio::join!(burst(&app, &service.api_base, &phones, 32, &done), killer);
    assert!(killed_at < phones.len(), "the node died during the burst");
    let slow: Vec<_> = answers.iter().filter(|a| a.2 >= Duration::from_secs(5)).collect();
    assert!(slow.is_empty(), "every start answered within 5 s: {slow:?}");
    let other: Vec<_> = answers.iter().filter(|a| !matches!(a.1, Ok(_) | Err(503))).collect();
    assert!(other.is_empty(), "starts answer 202 or 503: {other:?}");

    app.watch.step("the API and both workers recover without a restart");
    let bases = [service.api_base.as_str(), service.worker_base.as_str()];
    // Each process was on the first node; the killed leader's own clients move on from it.
    let killed = format!("127.0.0.1:{}", cluster(&["port", &leader]).await);
    wait_until_ready_elsewhere(&app, &bases, &killed).await;
    let after = numbers(2100)[2000..].to_vec();
    let later = burst(&app, &service.api_base, &after, 8, &AtomicUsize::new(0)).await;
    assert!(
        later.iter().all(|a| a.1.is_ok()),
        "starts after the fail-over: {later:?}"
    );
    for process in [&mut service.api, &mut service.worker, &mut second] {
        assert!(process.try_wait().unwrap().is_none(), "no process exited");
    }

    app.watch
        .step("the killed node started again, every 202 sent exactly once");
    // Until its node is back, the queue keeps the lost node's consumers as suspected down
    // (they might come back after a partition), and they count as holding jobs.
    cluster(&["start-node", &leader]).await;
    let all: Vec<Answer> = answers.into_iter().chain(later).collect();
    assert_each_accepted_sent_once(&app, &all).await;
    let refused = all.iter().filter(|a| a.1.is_err()).count();
    eprintln!("{} starts, {refused} answered 503 during the fail-over", all.len());

    service.stop();
    drop(second);
    app.stop().await;
    cluster(&["stop"]).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault test: run with --include-ignored"]
async fn a_follower_stopped_and_started_goes_unnoticed() {
    let _serial = serial().await;
    let (app, mut service, second) = service_on_a_cluster().await;
    let leader = leader_of(&app.queue).await;
    let follower = ["rabbit-c3@localhost", "rabbit-c2@localhost"]
        .into_iter()
        .find(|node| *node != leader)
        .unwrap();
    let (_, before) = readyz(&app, &service.api_base).await;
    let node = before["broker_node"].clone();

    app.watch.step("a burst while a follower stops and starts again");
    let phones = numbers(1500);
    let done = AtomicUsize::new(0);
    let bounce = async {
        while done.load(Ordering::Relaxed) < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cluster(&["stop-node", follower]).await;
        let during = readyz(&app, &service.api_base).await;
        cluster(&["start-node", follower]).await;
        during
    };
    let (answers, during) = tokio::join!(burst(&app, &service.api_base, &phones, 16, &done), bounce);
    assert_eq!(
        during.0, 200,
        "the API stays ready while a follower is down: {}",
        during.1
    );
    assert!(answers.iter().all(|a| a.1.is_ok()), "every start answered 202");
    for base in [&service.api_base, &service.worker_base] {
        let (status, body) = readyz(&app, base).await;
        assert_eq!(status, 200, "{base}: {body}");
        assert_eq!(body["broker_node"], node, "{base} kept its connection");
    }
    assert_each_accepted_sent_once(&app, &answers).await;
    for log in [&service.api_log, &service.worker_log] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(
            !text.contains("lost the connection") && !text.contains("session ended"),
            "no reconnection: {}",
            log.display()
        );
    }
    service.stop();
    drop(second);
    app.stop().await;
    cluster(&["stop"]).await;
}
