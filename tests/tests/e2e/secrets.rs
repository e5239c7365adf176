//! Codes, secrets and full phone numbers never reach the logs.

use std::time::Duration;

use serde_json::json;
use verify_tests::fake_twilio::Fault;
use verify_tests::harness::{API_KEY, CODE_SEALING_KEYS, Options, VERIFY_SECRET, code_in, spawn_app_with};

/// Whether `needle` stands in `haystack` as a token of its own (not inside a longer run of
/// digits, letters, or a UUID or timestamp).
fn has_token(haystack: &str, needle: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || "-.:".contains(c)));
    haystack.match_indices(needle).any(|(at, _)| {
        boundary(haystack[..at].chars().next_back()) && boundary(haystack[at + needle.len()..].chars().next())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_logs_of_a_full_run_hold_no_code_secret_or_full_phone_number() {
    let app = spawn_app_with(Options::default().without_worker().env("CODE_LENGTH", "8")).await;
    let debug = "info,verify_api=debug,verify_worker=debug,common=debug,lapin=warn";
    let mut service = app.spawn_service_processes(&[("RUST_LOG", debug)]).await;
    let (api_base, http) = (service.api_base.clone(), reqwest::Client::new());
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{api_base}{path}"))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
    };

    // A run that touches every path: sends, a retry, an ambiguous call, a permanent refusal,
    // wrong and right checks, callbacks, bad input.
    app.fake
        .push_faults([Fault::Unavailable, Fault::InternalErrorAfterCreate]);
    let phones = ["+14155552671", "+14155552672", "+14155552673"];
    for phone in phones {
        assert_eq!(
            post("/v1/verifications", json!({"phone_number": phone}))
                .await
                .unwrap()
                .status(),
            202
        );
    }
    assert_eq!(
        post("/v1/verifications", json!({"phone_number": "+15005550001"}))
            .await
            .unwrap()
            .status(),
        202
    );
    let mut codes = Vec::new();
    for phone in phones {
        app.fake
            .wait_until(Duration::from_secs(20), "an SMS", |f| !f.messages_to(phone).is_empty())
            .await;
        let code = code_in(&app.fake.messages_to(phone)[0].body).unwrap();
        let wrong = if code == "00000000" { "11111111" } else { "00000000" };
        assert_eq!(
            post("/v1/verifications/check", json!({"phone_number": phone, "code": wrong}))
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            post("/v1/verifications/check", json!({"phone_number": phone, "code": code}))
                .await
                .unwrap()
                .status(),
            200
        );
        codes.push(code);
    }
    assert_eq!(
        post("/v1/verifications", json!({"phone_number": "+1 415 555 2674"}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(
            "/v1/verifications/check",
            json!({"phone_number": "+14155552675", "code": "12"})
        )
        .await
        .unwrap()
        .status(),
        400
    );
    let unauthorized = http
        .post(format!("{api_base}/v1/verifications"))
        .bearer_auth("wrong-key-0123456789");
    assert_eq!(
        unauthorized
            .json(&json!({"phone_number": phones[0]}))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    app.fake
        .wait_until(Duration::from_secs(20), "callbacks", |f| f.callbacks_sent() >= 6)
        .await;

    service.stop();
    let logs =
        std::fs::read_to_string(&service.api_log).unwrap() + &std::fs::read_to_string(&service.worker_log).unwrap();
    assert!(
        logs.lines().count() > 30,
        "the run was logged: {} lines",
        logs.lines().count()
    );
    assert!(logs.contains("+1415***2671"), "numbers are logged masked");
    for code in &codes {
        assert!(!has_token(&logs, code), "a code ({code}) is in the logs");
    }
    let secrets = [
        VERIFY_SECRET,
        CODE_SEALING_KEYS,
        API_KEY,
        "second-key-0123456789",
        &app.fake.config().auth_token,
    ];
    for secret in secrets {
        assert!(!logs.contains(secret), "a secret is in the logs");
    }
    for phone in phones.iter().chain(&["+15005550001"]) {
        assert!(
            !logs.contains(&phone[1..]),
            "a full phone number ({phone}) is in the logs"
        );
    }
    app.stop().await;
}

#[test]
fn the_token_search_finds_codes_but_not_digits_inside_other_tokens() {
    assert!(has_token(r#"{"body":"Your code is 12345678"}"#, "12345678"));
    assert!(has_token("code=12345678 sent", "12345678"));
    assert!(!has_token("id 3f0c1234-5678-4000-8000-000012345678", "12345678"));
    assert!(!has_token("at 17:52:12.123456789Z", "12345678"));
    assert!(!has_token("9912345678", "12345678"));
}

/// What the broker holds for a queued start: the job's code is sealed (its management UI or
/// its disk shows no live code), it opens only for its own verification, and a job whose
/// sealed code was moved to another verification is dead-lettered unsent.
#[tokio::test(flavor = "multi_thread")]
async fn a_queued_job_holds_its_code_sealed_for_its_own_verification_only() {
    use common::job::SendJob;
    use lapin::options::BasicGetOptions;

    let mut app = spawn_app_with(Options::default().without_worker().env("CODE_LENGTH", "8")).await;
    let (a, b) = ("+14155552681", "+14155552682");
    let (id_a, id_b) = (app.start_ok(a).await, app.start_ok(b).await);

    let conn = common::broker::connect(&verify_tests::harness::amqp_url(), "verify-tests")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut taken = Vec::new();
    for _ in 0..2 {
        let message = channel
            .basic_get(app.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a queued send job");
        taken.push(message.delivery.data.clone());
    }
    drop(conn.close(200, "ok".into()).await);

    let sealer = app.sealer();
    let mut jobs = Vec::new();
    for raw in &taken {
        let json: serde_json::Value = serde_json::from_slice(raw).unwrap();
        assert!(json.get("code").is_none(), "a clear code in the job: {json}");
        let job = SendJob::from_bytes(raw, &sealer).unwrap();
        let code = sealer.open_text(job.verification_id, &job.sealed_code).unwrap();
        assert!(
            !has_token(&String::from_utf8_lossy(raw), code.expose()),
            "the job shows its code"
        );
        jobs.push((job, code));
    }
    jobs.sort_by_key(|(job, _)| job.verification_id != id_a);
    let (job_a, code_a) = &jobs[0];
    assert_eq!((job_a.verification_id, jobs[1].0.verification_id), (id_a, id_b));

    // B's job carrying A's sealed code: it opens for no verification but A's.
    let mut forged = jobs[1].0.clone();
    forged.sealed_code = job_a.sealed_code.clone();
    app.publish_job(&forged).await;
    app.publish_job(job_a).await;
    app.start_worker().await;

    let sent = app.wait_for_code(a, 1).await;
    assert_eq!(sent, code_a.expose());
    app.wait_for_queue_depth(&app.dead_queue(), 1).await;
    assert!(app.fake.messages_to(b).is_empty(), "the forged job was sent");
    let forged_verification = app.get_verification(id_b).await;
    assert_eq!(
        forged_verification["delivery_status"], "failed",
        "{forged_verification}"
    );
    let checked: serde_json::Value = app.check(a, &sent).await.json().await.unwrap();
    assert_eq!(checked["status"], "approved");
    app.stop().await;
}
