//! Every bad input gets its error and changes nothing.

use serde_json::{Value, json};
use verify_tests::harness::{API_KEY, TestApp, spawn_app};

async fn rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    (status, body["error"]["code"].as_str().expect("error.code").to_owned())
}

async fn raw_post(app: &TestApp, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.http
        .post(format!("{}{path}", app.api_base))
        .bearer_auth(API_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_start_requests_are_refused_with_their_code_and_create_nothing() {
    let app = spawn_app().await;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed JSON", "{\"phone_number\": ".into(), 400, "invalid_request"),
        ("not an object", "[1, 2]".into(), 400, "invalid_request"),
        (
            "unknown field",
            json!({"phone_number": "+14155552671", "channel": "sms"}).to_string(),
            400,
            "invalid_request",
        ),
        ("missing field", json!({}).to_string(), 400, "invalid_request"),
        (
            "wrong type",
            json!({"phone_number": 14155552671u64}).to_string(),
            400,
            "invalid_request",
        ),
        (
            "no plus",
            json!({"phone_number": "14155552671"}).to_string(),
            400,
            "invalid_phone_number",
        ),
        (
            "spaces",
            json!({"phone_number": "+1 415 555 2671"}).to_string(),
            400,
            "invalid_phone_number",
        ),
        (
            "letters",
            json!({"phone_number": "+1415555CALL"}).to_string(),
            400,
            "invalid_phone_number",
        ),
        (
            "too long",
            json!({"phone_number": "+1415555267112345"}).to_string(),
            400,
            "invalid_phone_number",
        ),
        (
            "not a valid number",
            json!({"phone_number": "+10005550000"}).to_string(),
            400,
            "invalid_phone_number",
        ),
        (
            "no such country",
            json!({"phone_number": "+999123456789"}).to_string(),
            400,
            "invalid_phone_number",
        ),
        (
            "too big",
            json!({"phone_number": "+14155552671", "pad": "x".repeat(17 * 1024)}).to_string(),
            413,
            "payload_too_large",
        ),
    ];
    for (what, body, status, code) in cases {
        let response = raw_post(&app, "/v1/verifications", "application/json", body).await;
        assert_eq!(error_of(response).await, (status, code.to_owned()), "{what}");
    }
    let response = raw_post(
        &app,
        "/v1/verifications",
        "text/plain",
        json!({"phone_number": "+14155552671"}).to_string(),
    )
    .await;
    assert_eq!(error_of(response).await, (415, "unsupported_media_type".to_owned()));
    assert_eq!(rows(&app).await, 0, "nothing was stored");
    assert_eq!(app.fake.create_calls(), 0, "nothing was sent");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_codes_are_refused_without_counting_an_attempt() {
    let app = spawn_app().await;
    let id = app.start_ok("+14155552671").await;
    for bad in ["12345", "1234567", "12345a", "", " 12345", "١٢٣٤٥٦"] {
        let response = app.check("+14155552671", bad).await;
        assert_eq!(error_of(response).await, (400, "invalid_code".to_owned()), "{bad:?}");
    }
    let response = app
        .post_json("/v1/verifications/check", &json!({"phone_number": "+14155552671"}))
        .await;
    assert_eq!(error_of(response).await, (400, "invalid_request".to_owned()));
    let response = app.check("4155552671", "123456").await;
    assert_eq!(error_of(response).await, (400, "invalid_phone_number".to_owned()));
    assert_eq!(app.get_verification(id).await["check_attempts"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_bearer_token_is_refused() {
    let app = spawn_app().await;
    let url = format!("{}/v1/verifications", app.api_base);
    let body = json!({"phone_number": "+14155552671"});
    let none = app.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(error_of(none).await, (401, "unauthorized".to_owned()));
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("not-a-key-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(wrong).await, (401, "unauthorized".to_owned()));
    let basic = app
        .http
        .post(&url)
        .basic_auth(API_KEY, Some(""))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(basic).await, (401, "unauthorized".to_owned()));
    for path in [
        "/v1/ops/queues",
        "/v1/verifications/3f0c9a4e-0000-4000-8000-000000000000",
    ] {
        let r = app.http.get(format!("{}{path}", app.api_base)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    assert_eq!(rows(&app).await, 0);
    // The second configured key works too: keys can be rotated.
    let second = app
        .http
        .post(&url)
        .bearer_auth("second-key-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 202);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_verifications_routes_and_methods_answer_json_errors() {
    let app = spawn_app().await;
    let get = |path: &str| {
        app.http
            .get(format!("{}{path}", app.api_base))
            .bearer_auth(API_KEY)
            .send()
    };
    let r = get("/v1/verifications/3f0c9a4e-0000-4000-8000-000000000000")
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (404, "verification_not_found".to_owned()));
    let r = get("/v1/verifications/not-a-uuid").await.unwrap();
    assert_eq!(error_of(r).await, (400, "invalid_request".to_owned()));
    let r = get("/v1/nothing-here").await.unwrap();
    assert_eq!(error_of(r).await.0, 404);
    let r = get("/v1/verifications/check").await.unwrap();
    assert_eq!(error_of(r).await.0, 405);
    app.stop().await;
}
