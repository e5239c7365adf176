//! Worker processes killed with SIGKILL during a burst, and stopped with SIGTERM.

use std::process::Child;
use std::time::Duration;

use verify_tests::harness::{Options, spawn_app_with};

use crate::{assert_one_sms_each, burst, numbers, serial, wait_for_empty_queues, wait_until_settled};

fn signal(child: &Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {}", child.id());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault test: run with --include-ignored"]
async fn killing_a_worker_repeatedly_during_a_burst_loses_nothing_and_sends_nothing_twice() {
    let _serial = serial().await;
    let mut options = Options::default()
        .without_worker()
        .env("WORKER_CONCURRENCY", "32")
        .env("TWILIO_TIMEOUT_MS", "1000");
    // Not this test's subject: two callbacks per SMS during the burst compete with the starts
    // for the API's connections, and on a slow machine a start waited out its pool timeout.
    options.fake.callbacks = false;
    let app = spawn_app_with(options).await;
    app.fake.set_latency(Duration::from_millis(40));
    let steady = app.spawn_worker_process();
    let mut victim = app.spawn_worker_process();

    let phones = numbers(2000);
    let killer = async {
        let mut kills = 0;
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            signal(&victim, "-KILL");
            victim.wait().unwrap();
            kills += 1;
            victim = app.spawn_worker_process();
        }
        kills
    };
    let ((answers, _), kills) = tokio::join!(burst(&app, &phones, 32), killer);
    assert_eq!(kills, 8);
    let ids: Vec<_> = answers
        .iter()
        .map(|(p, a)| a.unwrap_or_else(|s| panic!("start for {p} got {s}")))
        .collect();

    let statuses = wait_until_settled(&app, &ids, Duration::from_secs(180)).await;
    let unsent: Vec<_> = statuses
        .iter()
        .filter(|s| !["submitted", "sent", "delivered"].contains(&s.as_str()))
        .collect();
    assert!(unsent.is_empty(), "not every verification was sent: {unsent:?}");
    // Every job done with (duplicates too) before counting SMS.
    wait_for_empty_queues(&app).await;
    assert_one_sms_each(&app, &phones);

    for mut child in [steady, victim] {
        signal(&child, "-TERM");
        assert_eq!(
            child.wait().unwrap().code(),
            Some(0),
            "a worker stops cleanly on SIGTERM"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault test: run with --include-ignored"]
async fn sigterm_lets_in_flight_sends_finish_and_the_worker_exit_0() {
    let _serial = serial().await;
    let options = Options::default()
        .without_worker()
        .env("SHUTDOWN_GRACE_SECONDS", "10")
        .env("WORKER_CONCURRENCY", "4");
    let app = spawn_app_with(options).await;
    app.fake.set_latency(Duration::from_millis(700));
    let mut worker = app.spawn_worker_process();
    app.wait_for_consumers(1).await;

    let phones = numbers(40);
    let (answers, _) = burst(&app, &phones, 8).await;
    let ids: Vec<_> = answers.iter().map(|(_, a)| a.expect("202")).collect();
    // Stop the worker while calls are in flight at the (slow) fake Twilio.
    app.fake
        .wait_until(Duration::from_secs(20), "calls in flight", |f| f.create_calls() >= 5)
        .await;
    let stopping = std::time::Instant::now();
    signal(&worker, "-TERM");
    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(12),
        "stopped within the grace period"
    );
    let unfinished: i64 = sqlx::query_scalar("SELECT count(*) FROM send_attempts WHERE outcome = 'in_flight'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(unfinished, 0, "every call under way was finished and recorded");
    // Jobs claimed while they waited for a slot were closed as never called, so the next
    // worker need not look them up at Twilio.
    let uncalled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM send_attempts WHERE outcome = 'not_at_twilio' \
         AND error_message = 'not called: the worker stopped first'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(uncalled >= 1, "the jobs waiting for a slot were handed back uncalled");
    let sent = app.fake.messages().len();
    assert!(
        sent >= 5 && sent < phones.len(),
        "the worker stopped taking jobs: {sent} sent"
    );

    let mut second = app.spawn_worker_process();
    app.wait_for_consumers(1).await;
    wait_until_settled(&app, &ids, Duration::from_secs(60)).await;
    assert_one_sms_each(&app, &phones);
    signal(&second, "-TERM");
    assert_eq!(second.wait().unwrap().code(), Some(0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault test: run with --include-ignored"]
async fn three_workers_share_a_burst_and_one_can_leave_in_the_middle() {
    let _serial = serial().await;
    let options = Options::default().without_worker().env("WORKER_CONCURRENCY", "8");
    let app = spawn_app_with(options).await;
    app.fake.set_latency(Duration::from_millis(50));
    let mut workers: Vec<verify_tests::harness::Process> = (0..3).map(|_| app.spawn_worker_process()).collect();
    app.wait_for_consumers(3).await;

    let phones = numbers(900);
    let leaving = async {
        // Scale down by one while the burst is being sent.
        app.fake
            .wait_until(Duration::from_secs(30), "a third of the burst", |f| {
                f.messages().len() >= 300
            })
            .await;
        let mut leaver = workers.pop().unwrap();
        signal(&leaver, "-TERM");
        tokio::task::spawn_blocking(move || leaver.wait().unwrap().code())
            .await
            .unwrap()
    };
    let ((answers, _), left_with) = tokio::join!(burst(&app, &phones, 32), leaving);
    assert_eq!(left_with, Some(0), "the worker that left stopped cleanly");
    let ids: Vec<_> = answers
        .iter()
        .map(|(p, a)| a.unwrap_or_else(|s| panic!("start for {p} got {s}")))
        .collect();
    let statuses = wait_until_settled(&app, &ids, Duration::from_secs(120)).await;
    assert!(
        statuses
            .iter()
            .all(|s| ["submitted", "sent", "delivered"].contains(&s.as_str())),
        "{statuses:?}"
    );
    wait_for_empty_queues(&app).await;
    assert_one_sms_each(&app, &phones);

    let shares = common::repo::calls_per_worker(&app.pool).await.unwrap();
    assert_eq!(shares.len(), 3, "three workers made calls: {shares:?}");
    let total: i64 = shares.iter().map(|(_, n)| n).sum();
    assert!(
        shares.iter().all(|(_, n)| *n * 10 >= total),
        "each worker did a share (at least 10 %): {shares:?}"
    );
    for mut worker in workers {
        signal(&worker, "-TERM");
        assert_eq!(worker.wait().unwrap().code(), Some(0));
    }
    app.stop().await;
}
