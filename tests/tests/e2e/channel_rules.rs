//! The abuse rules per channel: a number's rate limits count every channel together,
//! `ALLOWED_COUNTRIES` holds for every channel, and the number types suit each channel (a call
//! reaches a fixed line; nothing goes to premium-rate numbers).

use serde_json::{Value, json};
use verify_tests::harness::{Options, TestApp, spawn_app_with};

const WHATSAPP_FROM: &str = "+15005550006";

fn limited() -> Options {
    Options::default()
        .without_worker()
        .env("TWILIO_WHATSAPP_FROM", WHATSAPP_FROM)
        .env("RATE_LIMITS", "on")
        .env("SMS_NUMBER_TYPES", "mobile,fixed_line_or_mobile")
        .env("RESEND_COOLDOWN_SECONDS", "0")
        .env("SENDS_PER_NUMBER", "3")
        .env("SENDS_PER_NUMBER_WINDOW_SECONDS", "600")
        .env("STARTS_PER_IP_PER_MINUTE", "0")
        .env("PREFIX_STARTS_PER_MINUTE", "0")
        .env("ALLOWED_COUNTRIES", "US,GB")
}

/// A start's status, error code and message.
async fn start(app: &TestApp, phone: &str, channels: Value) -> (u16, String, String) {
    let response = app
        .post_json(
            "/v1/verifications",
            &json!({"phone_number": phone, "channels": channels}),
        )
        .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let field = |name: &str| body["error"][name].as_str().unwrap_or("").to_owned();
    (status, field("code"), field("message"))
}

async fn rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_numbers_limit_counts_every_channel_together() {
    let app = spawn_app_with(limited()).await;
    let phone = "+14155552671";
    for channels in [json!(["sms"]), json!(["call"]), json!(["whatsapp", "sms"])] {
        assert_eq!(start(&app, phone, channels).await.0, 202);
    }
    for channels in [json!(["call"]), json!(["whatsapp"]), json!(["sms", "call"])] {
        let (status, code, message) = start(&app, phone, channels.clone()).await;
        assert_eq!((status, code.as_str()), (429, "rate_limited"), "{channels}");
        assert!(message.contains("at most 3"), "{message}");
    }
    assert_eq!(rows(&app).await, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn countries_and_number_types_hold_for_every_channel() {
    let app = spawn_app_with(limited()).await;
    for channels in [json!(["call"]), json!(["whatsapp"]), json!(["sms", "call"])] {
        let (status, code, _) = start(&app, "+33612345678", channels.clone()).await;
        assert_eq!((status, code.as_str()), (403, "country_not_allowed"), "{channels}");
    }
    // A call reaches a fixed line, but only when every channel of the list can.
    assert_eq!(start(&app, "+442071838750", json!(["call"])).await.0, 202);
    for (phone, channels, says) in [
        (
            "+442071838750",
            json!(["sms", "call"]),
            "fixed line number, which is not accepted for SMS",
        ),
        (
            "+442071838751",
            json!(["call", "whatsapp"]),
            "fixed line number, which is not accepted for WhatsApp",
        ),
        (
            "+19005551234",
            json!(["call"]),
            "premium rate number, which is not accepted for calls",
        ),
        (
            "+19005551234",
            json!(["sms"]),
            "premium rate number, which is not accepted for SMS",
        ),
    ] {
        let (status, code, message) = start(&app, phone, channels).await;
        assert_eq!((status, code.as_str()), (400, "invalid_phone_number"), "{phone}");
        assert!(message.contains(says), "{phone}: {message}");
    }
    assert_eq!(rows(&app).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_never_go_to_premium_rate_numbers_even_when_every_type_is_accepted() {
    let app = spawn_app_with(limited().env("SMS_NUMBER_TYPES", "any")).await;
    let (status, _, message) = start(&app, "+19005551234", json!(["call"])).await;
    assert_eq!(status, 400, "{message}");
    assert_eq!(start(&app, "+19005551234", json!(["sms"])).await.0, 202);
    app.stop().await;
}
