//! Nothing lost, nothing sent twice: leases, duplicates, lookups, delay queues, dead
//! letters, the outbox relay.

use std::time::Duration;

use common::code::{Code, CodeLength};
use common::job::SendJob;
use common::repo::{self, Claim, NewVerification};
use uuid::Uuid;
use verify_tests::fake_twilio::Fault;
use verify_tests::harness::{Options, TestApp, spawn_app, spawn_app_with};

pub(super) const PHONE: &str = "+14155552671";
pub(super) const OTHER_PHONE: &str = "+14155552672";

/// A verification stored as the API stores it, without publishing its job.
pub(super) async fn stored_verification(app: &TestApp, phone: &str) -> (Uuid, Code) {
    let id = Uuid::new_v4();
    let code = Code::generate(CodeLength::default());
    let new = NewVerification {
        id,
        phone_number: phone,
        code_hmac: &app.hasher().digest(id, &code),
        max_check_attempts: 5,
        ttl_seconds: 600,
        request_id: None,
    };
    repo::insert(&app.pool, &new).await.unwrap();
    (id, code)
}

pub(super) fn lease(holder: &str, seconds: f64) -> repo::Lease<'_> {
    repo::Lease { holder, seconds }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_send_cannot_be_claimed_by_another_until_its_lease_runs_out() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let (id, _) = stored_verification(&app, PHONE).await;
    let claim = |holder, seconds| repo::claim_send(&app.pool, id, lease(holder, seconds));
    assert!(matches!(claim("a", 30.0).await.unwrap(), Claim::Claimed { .. }));
    assert!(matches!(claim("b", 30.0).await.unwrap(), Claim::Busy));
    // Its holder takes it again (a job run again after a database outage).
    assert!(matches!(claim("a", 0.0).await.unwrap(), Claim::Claimed { .. }));
    // A lease that ran out is anyone's.
    assert!(matches!(claim("b", 30.0).await.unwrap(), Claim::Claimed { .. }));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_is_renewed_and_released_only_by_its_holder() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let (id, _) = stored_verification(&app, PHONE).await;
    // Worker a's lease runs out at once; worker b takes the send over.
    repo::claim_send(&app.pool, id, lease("a", 0.0)).await.unwrap();
    assert!(matches!(
        repo::claim_send(&app.pool, id, lease("b", 30.0)).await.unwrap(),
        Claim::Claimed { .. }
    ));
    // a can neither renew it (and so may not call Twilio) nor give it back.
    assert_eq!(
        repo::begin_attempt(&app.pool, id, 1, lease("a", 30.0), "a")
            .await
            .unwrap(),
        None
    );
    assert!(!repo::release_claim(&app.pool, id, "a", "q").await.unwrap());
    assert!(matches!(
        repo::claim_send(&app.pool, id, lease("c", 30.0)).await.unwrap(),
        Claim::Busy
    ));
    assert!(
        repo::attempts(&app.pool, id).await.unwrap().is_empty(),
        "a recorded no call"
    );
    // b can do both.
    assert!(
        repo::begin_attempt(&app.pool, id, 1, lease("b", 30.0), "b")
            .await
            .unwrap()
            .is_some()
    );
    assert!(repo::release_claim(&app.pool, id, "b", "q").await.unwrap());
    assert!(matches!(
        repo::claim_send(&app.pool, id, lease("c", 30.0)).await.unwrap(),
        Claim::Claimed { .. }
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_jobs_on_two_workers_send_one_sms() {
    let mut app = spawn_app_with(Options::default().without_worker()).await;
    app.fake.set_latency(Duration::from_millis(300));
    let (id, code) = stored_verification(&app, PHONE).await;
    let job = SendJob::new(id, app.sealer().seal_text(id, &code), None);
    for _ in 0..4 {
        app.publish_job(&job).await;
    }
    app.start_worker().await;
    app.start_worker().await;
    app.wait_for_field(id, "delivery_status", "delivered").await;
    // Every copy acked: none waits in a queue or in a worker's hands to send again.
    app.wait_until_idle().await;
    assert_eq!(
        app.fake.messages_to(PHONE).len(),
        1,
        "one SMS for four copies of the job"
    );
    assert_eq!(app.fake.create_calls(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_job_whose_sms_was_submitted_is_acked_without_calling_twilio() {
    let app = spawn_app().await;
    let id = app.start_ok(PHONE).await;
    let code = app.wait_for_code(PHONE, 1).await;
    app.wait_for_field(id, "delivery_status", "delivered").await;
    let code = Code::parse(&code, CodeLength::default()).unwrap();
    app.publish_job(&SendJob::new(id, app.sealer().seal_text(id, &code), None))
        .await;
    // The redelivered job acked (not waiting in a delay queue to try again).
    app.wait_until_idle().await;
    assert_eq!(app.fake.create_calls(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_whose_worker_died_is_looked_up_before_sending_again() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let (id, code) = stored_verification(&app, PHONE).await;
    // A worker claimed the send, recorded the call as in flight, and died; Twilio had
    // created the message.
    repo::claim_send(&app.pool, id, lease("dead-worker", 0.0))
        .await
        .unwrap();
    repo::begin_attempt(&app.pool, id, 1, lease("dead-worker", 0.0), "dead-worker")
        .await
        .unwrap();
    let sid = app
        .fake
        .inject_message(PHONE, &format!("Your verification code is {}", code.expose()));
    let mut app = app;
    app.publish_job(&SendJob::new(id, app.sealer().seal_text(id, &code), None))
        .await;
    app.start_worker().await;
    let view = app.wait_for_field(id, "delivery_status", "submitted").await;
    assert_eq!(view["provider_message_sid"], sid.as_str());
    assert_eq!(app.fake.create_calls(), 0, "no second SMS");
    assert_eq!(
        repo::attempts(&app.pool, id).await.unwrap(),
        vec![(1, "found_at_twilio".to_string(), None)]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_retry_waits_in_a_delay_queue_not_in_the_worker() {
    let options = Options::default()
        .env("RETRY_INITIAL_MS", "2500")
        .env("RETRY_INPROCESS_MAX_MS", "100");
    let app = spawn_app_with(options).await;
    app.fake.push_faults([Fault::Unavailable]);
    let id = app.start_ok(PHONE).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.retry_depth().await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retry never reached a delay queue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.get_verification(id).await["delivery_status"], "sending");
    app.wait_for_field(id, "delivery_status", "delivered").await;
    assert_eq!(app.retry_depth().await, 0);
    let attempts = repo::attempts(&app.pool, id).await.unwrap();
    assert_eq!(
        attempts,
        vec![(1, "retry".into(), Some(20503)), (2, "submitted".into(), None)]
    );
    assert_eq!(app.fake.messages().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_with_their_reason_and_replayed_while_pending() {
    let app = spawn_app_with(Options::default().env("SEND_MAX_ATTEMPTS", "2")).await;
    app.fake.push_faults([Fault::Unavailable; 2]);
    let id = app.start_ok(PHONE).await;
    app.wait_for_field(id, "delivery_status", "failed").await;
    app.wait_for_queue_depth(&app.dead_queue(), 1).await;

    app.watch.step("listing the dead letters");
    let mut listing = Vec::new();
    let seen = verify_worker::dead_letters::list(&app.worker_config(), &mut listing)
        .await
        .unwrap();
    let listing = String::from_utf8(listing).unwrap();
    assert_eq!(seen, 1);
    assert!(listing.contains(&id.to_string()), "{listing}");
    assert!(listing.contains("2 Twilio calls failed"), "{listing}");
    app.wait_for_queue_depth(&app.dead_queue(), 1).await;

    app.watch.step("replaying the dead letters");
    let mut output = Vec::new();
    let summary = verify_worker::dead_letters::replay(&app.worker_config(), &app.pool, &mut output)
        .await
        .unwrap();
    assert_eq!(
        summary,
        verify_worker::dead_letters::ReplaySummary { replayed: 1, kept: 0 }
    );
    app.wait_for_field(id, "delivery_status", "delivered").await;
    assert_eq!(app.fake.messages_to(PHONE).len(), 1);
    app.wait_for_queue_depth(&app.dead_queue(), 0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_whose_verification_expired_is_not_replayed() {
    let app = spawn_app_with(Options::default().env("SEND_MAX_ATTEMPTS", "1")).await;
    app.fake.push_faults([Fault::Unavailable]);
    let id = app.start_ok(PHONE).await;
    app.wait_for_queue_depth(&app.dead_queue(), 1).await;
    sqlx::query("UPDATE verifications SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut output = Vec::new();
    let summary = verify_worker::dead_letters::replay(&app.worker_config(), &app.pool, &mut output)
        .await
        .unwrap();
    assert_eq!(
        summary,
        verify_worker::dead_letters::ReplaySummary { replayed: 0, kept: 1 }
    );
    app.wait_for_queue_depth(&app.dead_queue(), 1).await;
    assert_eq!(app.fake.messages().len(), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_whose_api_died_before_the_confirm_is_sent_by_the_outbox_relay() {
    let options = Options::default()
        .env("PUBLISH_TIMEOUT_MS", "200")
        .env("OUTBOX_RELAY_AFTER_SECONDS", "1");
    let app = spawn_app_with(options).await;
    let (row, code) = outbox_row(&app, PHONE);
    // A row as a build from before AEAD sealing wrote it: the digits XOR an HMAC keystream.
    let (mut legacy, legacy_code) = outbox_row(&app, OTHER_PHONE);
    legacy.sealed_code = pre_aead_seal(legacy.id, &legacy_code);
    repo::insert_batch_with_outbox(&app.pool, &[row, legacy], 0)
        .await
        .unwrap();
    for (phone, code) in [(PHONE, &code), (OTHER_PHONE, &legacy_code)] {
        let sent = app.wait_for_code(phone, 1).await;
        assert_eq!(sent, code.expose());
        let body: serde_json::Value = app.check(phone, code.expose()).await.json().await.unwrap();
        assert_eq!(body["status"], "approved");
    }
    wait_for_empty_outbox(&app, "after the relay").await;
    app.stop().await;
}

fn pre_aead_seal(id: Uuid, code: &Code) -> Vec<u8> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(verify_tests::harness::VERIFY_SECRET.as_bytes()).unwrap();
    mac.update(b"verify-outbox-seal-v1\0");
    mac.update(id.as_bytes());
    let stream = mac.finalize().into_bytes();
    code.expose().bytes().zip(stream).map(|(d, k)| d ^ k).collect()
}

/// An outbox row (and its code) as a start leaves it when its process dies right after the
/// commit.
fn outbox_row(app: &TestApp, phone: &str) -> (repo::NewRow, Code) {
    let id = Uuid::new_v4();
    let code = Code::generate(CodeLength::default());
    let row = repo::NewRow {
        id,
        phone_number: phone.to_owned(),
        code_hmac: app.hasher().digest(id, &code),
        max_check_attempts: 5,
        ttl_seconds: 600.0,
        request_id: None,
        sealed_code: app.sealer().seal(id, &code),
        locale: "en".into(),
        channels: vec!["sms".into()],
        fallback_after_seconds: 60,
        idempotency: None,
        test: false,
    };
    (row, code)
}

async fn outbox_len(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Published rows are settled (deleted) in batches just after their confirms: waits for that.
async fn wait_for_empty_outbox(app: &TestApp, when: &str) {
    app.watch.step(&format!("waiting for an empty outbox {when}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let outbox = outbox_len(app).await;
        if outbox == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{outbox} outbox rows left {when}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_publishes_a_large_backlog_in_one_round_and_skips_superseded_jobs() {
    // Confirms for 500 jobs at once can take a while on a busy machine; one that times out
    // is rightly published again a lease later, which this test would count as a duplicate.
    let options = Options::default()
        .without_worker()
        .env("PUBLISH_TIMEOUT_MS", "1000")
        .env("OUTBOX_RELAY_AFTER_SECONDS", "3");
    let app = spawn_app_with(options).await;
    // More than two relay batches, left behind by a dead process.
    let rows: Vec<repo::NewRow> = (0..1200)
        .map(|i| outbox_row(&app, &format!("+1415555{i:04}")).0)
        .collect();
    repo::insert_batch_with_outbox(&app.pool, &rows, 0).await.unwrap();
    // Superseded before the relay came: its job is dropped, not published.
    let (older, _) = outbox_row(&app, "+14155559999");
    repo::insert_batch_with_outbox(&app.pool, std::slice::from_ref(&older), 0)
        .await
        .unwrap();
    let (newer, _) = outbox_row(&app, "+14155559999");
    let stored = repo::insert_batch_with_outbox(&app.pool, &[newer], 0).await.unwrap();
    assert_eq!(
        stored[0].as_ref().map(|s| s.1),
        Some(1),
        "the newer start superseded the older one"
    );
    let older_status: String = sqlx::query_scalar("SELECT status FROM verifications WHERE id = $1")
        .bind(older.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(older_status, "canceled");

    app.wait_for_queue_depth(&app.queue, 1201).await;
    wait_for_empty_outbox(&app, "once every row is relayed").await;
    // A row left behind after every other was relayed: once it is gone, a relay round has
    // run since the outbox emptied, and any job published twice is in the queue.
    let (marker, _) = outbox_row(&app, "+14155559998");
    repo::insert_batch_with_outbox(&app.pool, &[marker], 0).await.unwrap();
    wait_for_empty_outbox(&app, "once the later row is relayed").await;
    assert_eq!(
        app.queue_depth(&app.queue).await,
        1202,
        "nothing published twice (1201 jobs and the later row's)"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_starts_for_one_number_leave_exactly_the_newest_pending() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    let answers = futures_util::future::join_all((0..20).map(|_| app.start(PHONE))).await;
    assert!(answers.iter().all(|r| r.status() == 202), "every start accepted");
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, status FROM verifications WHERE phone_number = $1 ORDER BY seq")
            .bind(PHONE)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 20);
    let pending: Vec<_> = rows.iter().filter(|(_, s)| s == "pending").collect();
    assert_eq!(pending.len(), 1, "{rows:?}");
    assert_eq!(pending[0].0, rows.last().unwrap().0, "the newest one is pending");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confirmed_start_leaves_nothing_in_the_outbox() {
    let app = spawn_app().await;
    for n in 0..5 {
        app.start_ok(&format!("+1415555267{n}")).await;
    }
    // A start with nothing to supersede settles its outbox row in a batch, moments later.
    wait_for_empty_outbox(&app, "after confirmed starts").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_201_recorded_before_the_worker_failed_is_not_sent_again() {
    let mut app = spawn_app_with(Options::default().without_worker()).await;
    let (id, code) = stored_verification(&app, PHONE).await;
    // The call got its 201 recorded, then PostgreSQL went away before the verification was
    // marked submitted; the job went back to the queue.
    repo::claim_send(&app.pool, id, lease("dead-worker", 0.0))
        .await
        .unwrap();
    let row = repo::begin_attempt(&app.pool, id, 1, lease("dead-worker", 0.0), "dead-worker")
        .await
        .unwrap()
        .expect("the holder begins a call");
    let sid = app
        .fake
        .inject_message(PHONE, &format!("Your verification code is {}", code.expose()));
    let result = repo::AttemptResult {
        outcome: repo::AttemptOutcome::Submitted,
        http_status: Some(201),
        twilio_error_code: None,
        error_message: None,
        provider_message_sid: Some(&sid),
    };
    repo::finish_attempt(&app.pool, row, &result).await.unwrap();
    app.publish_job(&SendJob::new(id, app.sealer().seal_text(id, &code), None))
        .await;
    app.start_worker().await;
    let view = app.wait_for_field(id, "delivery_status", "submitted").await;
    assert_eq!(view["provider_message_sid"], sid.as_str());
    assert_eq!(app.fake.create_calls(), 0, "no second SMS");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_delivered_five_times_without_an_outcome_is_dead_lettered_unsent() {
    let mut app = spawn_app_with(Options::default().without_worker()).await;
    let (id, code) = stored_verification(&app, PHONE).await;
    app.publish_job(&SendJob::new(id, app.sealer().seal_text(id, &code), None))
        .await;
    // Five consumers took the job and died with it: each time it went back to the queue,
    // and the quorum queue counted the delivery.
    let conn = common::broker::connect(&verify_tests::harness::amqp_url(), "verify-tests")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    for _ in 0..5 {
        let taken = loop {
            let got = channel
                .basic_get(app.queue.as_str().into(), lapin::options::BasicGetOptions::default())
                .await
                .unwrap();
            if let Some(message) = got {
                break message;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        taken
            .delivery
            .nack(lapin::options::BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    drop(conn.close(200, "ok".into()).await);

    app.start_worker().await;
    let view = app.wait_for_field(id, "delivery_status", "failed").await;
    assert_eq!(view["status"], "pending", "left pending so that it can be replayed");
    app.wait_for_queue_depth(&app.dead_queue(), 1).await;
    let reason: Option<String> = sqlx::query_scalar("SELECT dead_letter_reason FROM verifications WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(reason.as_deref(), Some("delivered 5 times without an outcome"));
    assert_eq!(app.fake.create_calls(), 0, "a poison job is not sent");
    app.stop().await;
}
