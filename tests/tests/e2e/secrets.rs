//! Codes, secrets and full phone numbers never reach the logs.

use std::time::Duration;

use serde_json::json;
use verify_tests::fake_twilio::Fault;
use verify_tests::harness::{API_KEY, Options, VERIFY_SECRET, code_in, spawn_app_with};

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
