//! The channels a code goes out on: SMS, WhatsApp (a template, or the locale's text) and a
//! call that speaks it; each through the fake Twilio with its callbacks, and the look-up of
//! an ambiguous call before any second one. Channels without a sender are refused.

use serde_json::{Value, json};
use uuid::Uuid;
use verify_tests::fake_twilio::{CallEnd, Fault, WhatsAppFreeForm};
use verify_tests::harness::{Options, TestApp, code_in, spawn_app_with};

const WHATSAPP_FROM: &str = "+15005550006";
const CONTENT_SID: &str = "HX0123456789abcdef0123456789abcdef";

async fn start(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app.post_json("/v1/verifications", &body).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

fn id(started: &Value) -> Uuid {
    started["id"].as_str().unwrap().parse().unwrap()
}

async fn stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_without_a_sender_or_badly_listed_are_refused_and_nothing_is_stored() {
    let app = spawn_app_with(Options::default().without_worker()).await;
    for (channels, code) in [
        (json!(["whatsapp"]), "channel_unavailable"),
        (json!(["sms", "whatsapp"]), "channel_unavailable"),
        (json!(["fax"]), "invalid_request"),
        (json!([]), "invalid_request"),
        (json!(["sms", "sms"]), "invalid_request"),
        (json!(["sms", "call", "whatsapp", "sms"]), "invalid_request"),
    ] {
        let (status, body) = start(&app, json!({"phone_number": "+14155552671", "channels": channels})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{channels}: {body}"
        );
    }
    assert_eq!(stored(&app).await, 0);
    // Without `channels`, DEFAULT_CHANNELS (sms).
    let (status, started) = start(&app, json!({"phone_number": "+14155552671"})).await;
    assert_eq!(status, 202);
    assert_eq!(
        (started["channels"].clone(), started["channel"].clone()),
        (json!(["sms"]), json!("sms"))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_speaks_the_code_in_the_locale_and_its_progress_is_the_delivery() {
    let app = spawn_app_with(Options::default()).await;
    let phone = "+14155552671";
    let (status, started) = start(
        &app,
        json!({"phone_number": phone, "channels": ["call"], "locale": "de"}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["channel"], "call");
    let view = app.wait_for_field(id(&started), "delivery_status", "delivered").await;
    let calls = app.fake.calls_to(phone);
    assert_eq!(calls.len(), 1, "one call");
    let call = &calls[0];
    assert_eq!(
        (call.language.as_deref(), call.voice.as_deref()),
        (Some("de-DE"), Some("Polly.Vicki"))
    );
    assert!(
        call.spoken.starts_with("Ihr Bestätigungscode lautet"),
        "{}",
        call.spoken
    );
    assert!(app.fake.messages_to(phone).is_empty(), "no SMS");
    assert_eq!(view["provider_message_sid"], call.sid.as_str());
    assert_eq!(view["steps"][0]["channel"], "call");
    assert_eq!(view["steps"][0]["provider_sid"], call.sid.as_str());
    // Said twice, the same code both times; and it checks.
    let code = code_in(&call.code_text()).unwrap();
    assert_eq!(call.code_text().matches(&code).count(), 2, "{}", call.code_text());
    let checked: Value = app.check(phone, &code).await.json().await.unwrap();
    assert_eq!(checked["status"], "approved");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_or_unanswered_call_is_undelivered() {
    let app = spawn_app_with(Options::default()).await;
    for (phone, end, status) in [
        ("+14155552671", CallEnd::Busy, "undelivered"),
        ("+14155552672", CallEnd::NoAnswer, "undelivered"),
        ("+14155552673", CallEnd::Failed, "failed"),
    ] {
        app.fake.set_call_outcome(phone, end);
        let (_, started) = start(&app, json!({"phone_number": phone, "channels": ["call"]})).await;
        app.wait_for_field(id(&started), "delivery_status", status).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ambiguous_call_is_looked_up_before_any_second_one() {
    let app = spawn_app_with(Options::default()).await;
    let phone = "+14155552671";
    // The call is placed, but its 201 never comes back in time.
    app.fake.push_faults([Fault::TimeoutAfterCreate]);
    let (_, started) = start(&app, json!({"phone_number": phone, "channels": ["call"]})).await;
    let view = app.wait_for_field(id(&started), "delivery_status", "delivered").await;
    let calls = app.fake.calls_to(phone);
    assert_eq!(calls.len(), 1, "rang once: {calls:?}");
    assert_eq!(view["provider_message_sid"], calls[0].sid.as_str());
    app.stop().await;
}

fn whatsapp(content_sid: Option<&str>) -> Options {
    let options = Options::default().env("TWILIO_WHATSAPP_FROM", WHATSAPP_FROM);
    match content_sid {
        Some(sid) => options.env("TWILIO_WHATSAPP_CONTENT_SID", sid),
        None => options,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn whatsapp_sends_the_approved_template_with_the_code() {
    let app = spawn_app_with(whatsapp(Some(CONTENT_SID))).await;
    let phone = "+14155552671";
    let (_, started) = start(&app, json!({"phone_number": phone, "channels": ["whatsapp"]})).await;
    assert_eq!(started["channel"], "whatsapp");
    let view = app.wait_for_field(id(&started), "delivery_status", "delivered").await;
    let sent = app.fake.messages_to(&format!("whatsapp:{phone}"));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].content_sid.as_deref(), Some(CONTENT_SID));
    assert_eq!(
        sent[0].from.as_deref(),
        Some(format!("whatsapp:{WHATSAPP_FROM}").as_str())
    );
    assert_eq!(view["steps"][0]["provider_sid"], sent[0].sid.as_str());
    let code = code_in(sent[0].body.split(" is your").next().unwrap()).unwrap();
    let checked: Value = app.check(phone, &code).await.json().await.unwrap();
    assert_eq!(checked["status"], "approved");
    assert!(app.fake.messages_to(phone).is_empty(), "no SMS");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whatsapp_without_a_template_sends_the_locales_text() {
    let app = spawn_app_with(whatsapp(None)).await;
    let phone = "+14155552671";
    // Inside the 24-hour window a free-form text is delivered.
    app.fake.set_whatsapp_free_form(WhatsAppFreeForm::InsideWindow);
    let (_, started) = start(
        &app,
        json!({"phone_number": phone, "channels": ["whatsapp"], "locale": "fr"}),
    )
    .await;
    app.wait_for_field(id(&started), "delivery_status", "delivered").await;
    let body = app.fake.messages_to(&format!("whatsapp:{phone}"))[0].body.clone();
    assert!(body.starts_with("Votre code de vérification est "), "{body}");
    assert!(!body.contains('@'), "no WebOTP line on WhatsApp: {body}");
    // Outside it, Twilio fails it with 63016: the delivery says so.
    app.fake.set_whatsapp_free_form(WhatsAppFreeForm::OutsideWindow);
    let phone = "+14155552672";
    let (_, started) = start(&app, json!({"phone_number": phone, "channels": ["whatsapp"]})).await;
    let view = app.wait_for_field(id(&started), "delivery_status", "failed").await;
    assert_eq!(view["delivery_error_code"], 63016);
    app.stop().await;
}
